package httpapi_test

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/udmg/gateway/httpapi"
	ts "github.com/udmg/gateway/testsupport"
)

// TestSlowClientsLeaveTheAPIServing: 500 real sockets, half of them sending
// their headers a line at a time (slowloris), half a body a few bytes at a
// time, are all cut off by the server within its timeouts, while other
// clients are answered as usual.
func TestSlowClientsLeaveTheAPIServing(t *testing.T) {
	e := newEnv(t)
	srv := httpapi.NewServer(e.api(httpapi.Options{}), nil)
	if srv.ReadHeaderTimeout <= 0 || srv.ReadTimeout <= 0 || srv.WriteTimeout < 30*time.Second ||
		srv.IdleTimeout <= 0 || srv.MaxHeaderBytes <= 0 {
		t.Fatalf("NewServer leaves a bound unset: %+v", srv)
	}
	// The production values are 10s and 30s; shorter ones keep the test short.
	srv.ReadHeaderTimeout, srv.ReadTimeout, srv.IdleTimeout = 2*time.Second, 3*time.Second, 3*time.Second
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(ln) }()
	t.Cleanup(func() {
		srv.Close()
		<-served
	})
	addr := ln.Addr().String()

	const slow = 500
	start := time.Now()
	closedAfter := make([]atomic.Int64, slow) // ns since start; 0 while open
	var wg sync.WaitGroup
	stop := make(chan struct{})
	defer close(stop)
	for i := range slow {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("slow client %d: %v", i, err)
		}
		t.Cleanup(func() { c.Close() })
		first := "GET /ping HTTP/1.1\r\nHost: udmg\r\n"
		if i%2 == 1 {
			first = "POST /ping HTTP/1.1\r\nHost: udmg\r\nContent-Length: 100000\r\n\r\n"
		}
		if _, err := io.WriteString(c, first); err != nil {
			t.Fatal(err)
		}
		wg.Add(2)
		go func() { // the trickle: a header line or a few body bytes a second
			defer wg.Done()
			tick := time.NewTicker(time.Second)
			defer tick.Stop()
			for {
				select {
				case <-stop:
					return
				case <-tick.C:
				}
				if _, err := io.WriteString(c, "X-Slow: 1\r\n"); err != nil {
					return
				}
			}
		}()
		go func() { // until the server closes the connection
			defer wg.Done()
			_, _ = io.Copy(io.Discard, c)
			closedAfter[i].Store(int64(time.Since(start)))
			c.Close()
		}()
	}

	// Meanwhile others are served: /ping, and an authenticated call (a
	// bcrypt comparison, slow under the race detector).
	hc := &http.Client{Timeout: 10 * time.Second}
	admin := &ts.APIClient{Base: "http://" + addr, User: "admin", Password: adminPassword}
	var pings, logins []time.Duration
	loginsDone := make(chan error, 1)
	go func() {
		for time.Since(start) < 4*time.Second {
			t0 := time.Now()
			r, err := admin.Do("GET", "/api/sb_healthcheck", nil)
			if err == nil && r.Status != 200 {
				err = fmt.Errorf("answer %s", r)
			}
			if err != nil {
				loginsDone <- fmt.Errorf("authenticated call during the slow clients: %w", err)
				return
			}
			logins = append(logins, time.Since(t0))
		}
		loginsDone <- nil
	}()
	for time.Since(start) < 4*time.Second {
		t0 := time.Now()
		r, err := hc.Get("http://" + addr + "/ping")
		if err != nil {
			t.Fatalf("ping during the slow clients: %v", err)
		}
		r.Body.Close()
		pings = append(pings, time.Since(t0))
		time.Sleep(20 * time.Millisecond) // a client's pace, not a load test
	}
	if err := <-loginsDone; err != nil {
		t.Fatal(err)
	}

	if !ts.Eventually(15*time.Second, func() bool {
		for i := range slow {
			if closedAfter[i].Load() == 0 {
				return false
			}
		}
		return true
	}) {
		n := 0
		for i := range slow {
			if closedAfter[i].Load() == 0 {
				n++
			}
		}
		t.Fatalf("%d of %d slow clients still connected after 15s (ReadHeaderTimeout 2s, ReadTimeout 3s)", n, slow)
	}
	wg.Wait()
	var worst time.Duration
	for i := range slow {
		worst = max(worst, time.Duration(closedAfter[i].Load()))
	}
	t.Logf("%d slow clients: all cut off within %s; meanwhile %d pings (max %s) and %d Basic logins (max %s)",
		slow, worst.Round(time.Millisecond), len(pings), slices.Max(pings).Round(time.Millisecond),
		len(logins), slices.Max(logins).Round(time.Millisecond))
	if m := slices.Max(pings); m > 2*time.Second {
		t.Fatalf("a ping took %s during the slow clients", m)
	}
}
