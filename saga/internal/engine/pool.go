package engine

import (
	"sync"
)

// pool runs a consumer's messages on at most max goroutines that it keeps
// for the runner's life: a goroutine per message started with a small
// stack and grew it on every message (decoding a payload is deep), which
// cost a tenth of the runner's CPU in the benchmark.
type pool struct {
	work chan func()
	quit <-chan struct{}
	mu   sync.Mutex
	n    int
	max  int
}

func newPool(max int, quit <-chan struct{}) *pool {
	return &pool{work: make(chan func()), quit: quit, max: max}
}

// run hands fn to an idle worker, starts one if fewer than max exist, or
// waits for one to be free. It returns false, without running fn, once
// the runner has stopped.
func (p *pool) run(fn func()) bool {
	select {
	case p.work <- fn:
		return true
	default:
	}
	p.mu.Lock()
	if p.n < p.max {
		p.n++
		p.mu.Unlock()
		go p.worker(fn)
		return true
	}
	p.mu.Unlock()
	select {
	case p.work <- fn:
		return true
	case <-p.quit:
		return false
	}
}

func (p *pool) worker(fn func()) {
	for {
		fn()
		select {
		case fn = <-p.work:
		case <-p.quit:
			return
		}
	}
}
