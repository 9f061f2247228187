package browser_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/cdproto/cdp"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
)

// browser starts headless Chromium (exe) with a w×h window, and extra
// flags, for the rest of the test. The browser lives as long as the
// returned context: a step's timeout, derived from it, still leaves it up
// to be asked what it shows.
func browser(t *testing.T, exe string, w, h int, extra ...chromedp.ExecAllocatorOption) context.Context {
	t.Helper()
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(exe), chromedp.NoSandbox, chromedp.Headless, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(filepath.Join(t.TempDir(), "chromium")), chromedp.WindowSize(w, h))
	opts = append(opts, extra...)
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancelAlloc)
	bctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(cancelCtx)
	if _, err := chromedp.Run(bctx, chromedp.Evaluate[bool]("true")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	return bctx
}

// tab is what a test drives in the browser: a step that fails ends the
// test with what dump says of the page then (read within ten seconds).
type tab struct {
	t    *testing.T
	name string // "browser", "console": the failure's first word
	bctx context.Context
	ctx  context.Context
	dump func(ctx context.Context) string
}

func (p *tab) step(what string, err error) {
	p.t.Helper()
	if err != nil {
		dctx, dcancel := context.WithTimeout(p.bctx, 10*time.Second)
		defer dcancel()
		p.t.Fatalf("%s: %s: %v\n%s", p.name, what, err, p.dump(dctx))
	}
}

// text is the text of the element sel.
func (p *tab) text(sel string) string {
	p.t.Helper()
	v, err := chromedp.Run(p.ctx, chromedp.Text(sel))
	p.step("read "+sel, err)
	return v
}

// tryText reads the text of sel, or "" when it cannot: for reads in a
// poll, of a node the page may be redrawing (chromedp then loses it).
func (p *tab) tryText(sel string) string {
	ctx, cancel := context.WithTimeout(p.ctx, 2*time.Second)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Text(sel))
	if err != nil {
		return ""
	}
	return v
}

// recordCSP has the page record, in window.cspViolations, what its
// Content-Security-Policy blocks; checkCSP fails the test if it blocked
// anything.
func recordCSP(ctx context.Context, t *chromedp.Target) (chromedp.Void, error) {
	_, err := cdp.Call(ctx, t, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: `window.cspViolations = [];
				document.addEventListener("securitypolicyviolation", (e) => window.cspViolations.push(e.violatedDirective + " " + e.blockedURI));`})
	return chromedp.Void{}, err
}

func (p *tab) checkCSP(what string) {
	p.t.Helper()
	csp, err := chromedp.Run(p.ctx, chromedp.Evaluate[string](`JSON.stringify(window.cspViolations)`))
	p.step("read the CSP violations", err)
	if csp != "[]" {
		p.t.Errorf("%s broke its Content-Security-Policy: %s", what, csp)
	}
}
