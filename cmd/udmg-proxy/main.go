// Command udmg-proxy is the Authentication Proxy in front of the gateway's
// admin API: it reads the seed's server.toml and forwards /service/NAME/...
// to the first target of service NAME that answers, moving on to the next
// when one fails.
//
//	udmg-proxy -c server.toml [-log-format text|json]
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/udmg/gateway/proxy"
)

func main() {
	path := flag.String("c", "server.toml", "path to the proxy's server.toml")
	logFormat := flag.String("log-format", "text", "text or json")
	flag.Parse()
	if err := run(*path, *logFormat); err != nil {
		fmt.Fprintln(os.Stderr, "udmg-proxy:", err)
		os.Exit(2)
	}
}

func run(path, logFormat string) error {
	var log *slog.Logger
	switch logFormat {
	case "text":
		log = slog.New(slog.NewTextHandler(os.Stderr, nil))
	case "json":
		log = slog.New(slog.NewJSONHandler(os.Stderr, nil))
	default:
		return fmt.Errorf("-log-format %q: use text or json", logFormat)
	}
	cfg, err := proxy.Load(path)
	if err != nil {
		return err
	}
	addr := net.JoinHostPort(cfg.Proxy.Inet, strconv.Itoa(cfg.Proxy.Port))
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("%s: [proxy] inet/port %s: %w", path, addr, err)
	}
	p := proxy.New(cfg, log)
	defer p.Close()
	srv := &http.Server{Handler: p, ReadHeaderTimeout: 10 * time.Second}
	serveErr := make(chan error, 1)
	go func() { serveErr <- srv.Serve(ln) }()
	for _, s := range cfg.Services {
		var targets []string
		for _, t := range s.Targets {
			targets = append(targets, s.Protocol+"://"+t.Addr())
		}
		log.Info("service", "name", s.Name, "url", "http://"+addr+"/service/"+s.Name+"/", "policy", s.Policy, "targets", targets)
	}
	log.Info("proxy listening", "addr", addr, "config", path)

	stopped, stopSignals := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stopSignals()
	select {
	case <-stopped.Done():
		log.Info("stopping")
	case err := <-serveErr:
		return fmt.Errorf("serve %s: %w", addr, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := srv.Shutdown(ctx); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("shutdown: %w", err)
	}
	log.Info("stopped")
	return nil
}
