package readme_test

import (
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"unicode"
)

// repoRoot is the repository's root, seen from this package's directory.
const repoRoot = "../../.."

// The documents whose links are checked: the README, the changelog and
// every guide in docs/.
func docFiles(t *testing.T) []string {
	t.Helper()
	guides, err := filepath.Glob(filepath.Join(repoRoot, "docs", "*.md"))
	if err != nil {
		t.Fatal(err)
	}
	if len(guides) == 0 {
		t.Fatal("no guides in docs/")
	}
	files := []string{filepath.Join(repoRoot, "README.md")}
	if _, err := os.Stat(filepath.Join(repoRoot, "CHANGELOG.md")); err == nil {
		files = append(files, filepath.Join(repoRoot, "CHANGELOG.md"))
	}
	return append(files, guides...)
}

// Every relative link of the README and the guides reaches a file or
// directory of the repository, and every anchor a heading of its document.
func TestDocLinksResolve(t *testing.T) {
	for _, b := range brokenLinks(docFiles(t)) {
		t.Error(b)
	}
}

// The Go blocks the docs show are the README's three, which
// TestREADMEShowsThisCode compares with code that compiles and runs. A Go
// block anywhere else would be checked by nothing: check it in this
// package (code between markers, as readme.go does) before adding it.
func TestEveryGoBlockIsChecked(t *testing.T) {
	for _, f := range docFiles(t) {
		md, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		want := 0
		if filepath.Base(f) == "README.md" && filepath.Base(filepath.Dir(f)) != "docs" {
			want = 3
		}
		if n := len(goBlocks(string(md))); n != want {
			t.Errorf("%s has %d Go blocks, want %d (the checked ones)", f, n, want)
		}
	}
}

// CI runs the README's test command (.ci/run): both say the same.
func TestREADMETestCommandIsCIs(t *testing.T) {
	const cmd = "go test -race -count=1 -timeout 25m ./..."
	for _, f := range []string{"README.md", ".ci/run"} {
		b, err := os.ReadFile(filepath.Join(repoRoot, f))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(b), "\n"+cmd+" ") && !strings.Contains(string(b), "\n"+cmd+"\n") {
			t.Errorf("%s does not run %q", f, cmd)
		}
	}
}

func TestBrokenLinksFindsThem(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) string {
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	a := write("a.md", "# A\n\n## Two `commands`: here\n\n## Dup\n\n## Dup\n\n"+
		"[ok](docs/b.md#the-bs-part) [ok](#two-commands-here) [ok](#dup-1) [ok](docs/) [ok](https://example.com/x#y)\n"+
		"[bad](docs/c.md) [bad](#nowhere) [bad](docs/b.md#nowhere) [bad](#dup-2)\n"+
		"`[not a link](nowhere.md)`\n\n```\n[not a link](nowhere.md)\n# not a heading\n```\n\n[ref]: docs/missing.md\n")
	write("docs/b.md", "# B\n\n## The B's part\n\n[ok](../a.md#a) [bad](../a.md#not-a-heading)\n")
	got := brokenLinks([]string{a, filepath.Join(dir, "docs", "b.md")})
	want := []string{"docs/c.md", "#nowhere", "docs/b.md#nowhere", "#dup-2", "docs/missing.md", "../a.md#not-a-heading"}
	if len(got) != len(want) {
		t.Fatalf("found %d broken links, want %d:\n%s", len(got), len(want), strings.Join(got, "\n"))
	}
	for i, w := range want {
		if !strings.Contains(got[i], "("+w+")") {
			t.Errorf("broken link %d is %q, want %s", i, got[i], w)
		}
	}
}

var (
	inlineLink = regexp.MustCompile(`\]\(([^()\s]+)(?:\s+"[^"]*")?\)`)
	refLink    = regexp.MustCompile(`(?m)^\s{0,3}\[[^\]]+\]:\s*(\S+)`)
	codeSpan   = regexp.MustCompile("`+[^`]*`+")
	heading    = regexp.MustCompile(`^#{1,6}\s+(.*?)\s*#*\s*$`)
	mdLink     = regexp.MustCompile(`\[([^\]]*)\]\([^)]*\)`)
)

// brokenLinks lists, as "file: (target)", every relative link of files
// that reaches no file, or an anchor its document does not have.
func brokenLinks(files []string) []string {
	var broken []string
	anchors := map[string][]string{}
	anchorsOf := func(path string) ([]string, error) {
		if a, ok := anchors[path]; ok {
			return a, nil
		}
		b, err := os.ReadFile(path)
		if err != nil {
			return nil, err
		}
		a := headingAnchors(string(b))
		anchors[path] = a
		return a, nil
	}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			broken = append(broken, fmt.Sprintf("%s: %v", f, err))
			continue
		}
		text := codeSpan.ReplaceAllString(strings.Join(prose(string(b)), "\n"), "")
		var targets []string
		for _, m := range inlineLink.FindAllStringSubmatch(text, -1) {
			targets = append(targets, m[1])
		}
		for _, m := range refLink.FindAllStringSubmatch(text, -1) {
			targets = append(targets, m[1])
		}
		for _, target := range targets {
			if strings.Contains(target, "://") || strings.HasPrefix(target, "mailto:") {
				continue
			}
			path, anchor, _ := strings.Cut(target, "#")
			dest := f
			if path != "" {
				dest = filepath.Join(filepath.Dir(f), filepath.FromSlash(path))
				if _, err := os.Stat(dest); err != nil {
					broken = append(broken, fmt.Sprintf("%s: (%s): no such file", f, target))
					continue
				}
			}
			if anchor == "" {
				continue
			}
			if !strings.HasSuffix(dest, ".md") {
				broken = append(broken, fmt.Sprintf("%s: (%s): an anchor in a file that is not Markdown", f, target))
				continue
			}
			a, err := anchorsOf(dest)
			if err != nil {
				broken = append(broken, fmt.Sprintf("%s: (%s): %v", f, target, err))
				continue
			}
			if !slices.Contains(a, anchor) {
				broken = append(broken, fmt.Sprintf("%s: (%s): no such heading in %s (it has %s)", f, target, dest, strings.Join(a, " ")))
			}
		}
	}
	return broken
}

// prose is md's lines outside fenced code blocks.
func prose(md string) []string {
	var out []string
	fence := ""
	for _, line := range strings.Split(md, "\n") {
		trimmed := strings.TrimSpace(line)
		switch {
		case fence != "":
			if strings.HasPrefix(trimmed, fence) && strings.Trim(trimmed, fence[:1]) == "" {
				fence = ""
			}
		case strings.HasPrefix(trimmed, "```"), strings.HasPrefix(trimmed, "~~~"):
			fence = trimmed[:3]
			for len(fence) < len(trimmed) && trimmed[len(fence)] == fence[0] {
				fence += fence[:1]
			}
		default:
			out = append(out, line)
		}
	}
	return out
}

// headingAnchors are the anchors GitHub gives md's headings: the text
// lower-cased, without punctuation, spaces made hyphens; a repeated
// anchor gets -1, -2, … .
func headingAnchors(md string) []string {
	var out []string
	seen := map[string]int{}
	for _, line := range prose(md) {
		m := heading.FindStringSubmatch(line)
		if m == nil {
			continue
		}
		text := mdLink.ReplaceAllString(m[1], "$1")
		var b strings.Builder
		for _, r := range strings.ToLower(text) {
			switch {
			case r == ' ':
				b.WriteRune('-')
			case r == '-' || r == '_' || unicode.IsLetter(r) || unicode.IsDigit(r):
				b.WriteRune(r)
			}
		}
		a := b.String()
		if n := seen[a]; n > 0 {
			seen[a] = n + 1
			a = fmt.Sprintf("%s-%d", a, n)
		} else {
			seen[a] = 1
		}
		out = append(out, a)
	}
	return out
}
