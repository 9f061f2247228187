package kit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/nats-io/nats.go"
)

// HealthServer answers GET /healthz for a service run by Main with
// --health-addr: 200 while its connection to the broker is up, 503 with the
// reason otherwise. A container's health check probes it (the images have
// no shell: deploy/probe).
type HealthServer struct {
	ln net.Listener
}

// ListenHealth listens on addr, so that a bad address stops a service
// before it connects; Serve answers once the connection is made.
func ListenHealth(addr string) (*HealthServer, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("--health-addr: %v", oneLine(err))
	}
	return &HealthServer{ln: ln}, nil
}

// Addr is where the server listens.
func (h *HealthServer) Addr() net.Addr { return h.ln.Addr() }

// Serve answers probes about nc until ctx ends, then closes the listener.
func (h *HealthServer) Serve(ctx context.Context, nc *nats.Conn) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		if st := nc.Status(); st != nats.CONNECTED {
			http.Error(w, fmt.Sprintf("not connected to the broker (%s)", st), http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
	}()
	err := srv.Serve(h.ln)
	<-done
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}
