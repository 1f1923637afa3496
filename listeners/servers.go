package listeners

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/udmg/gateway/authguard"
	"github.com/udmg/gateway/confine"
	"github.com/udmg/gateway/fsm"
)

// ManagerConfig is what the ACTIVE node gives the Manager.
type ManagerConfig struct {
	Host        string // interface of every server ([listeners] Host)
	GatewayHome string // absolute; a server's homes are GatewayHome/<Root>/<login>
	HostKey     ssh.Signer
	Allowed     func() bool // the lease check, as Config.Allowed
	Logger      *slog.Logger
	StopTimeout time.Duration
	// Unseal opens sealed secrets (FTPS private keys).
	Unseal func(string) ([]byte, error)
	// Recorder gives the recorder of a server's transfers (nil: none).
	Recorder func(server fsm.Server) Recorder
	// Audit records every change to storage (nil: no write audit).
	Audit *Audit
	// Account looks a login of a server up in the replicated state at each
	// login, in place (cluster.Node.Account: no copy of the state), so that
	// an account created a moment ago can log in at once (nil: none can).
	Account func(server, login string) (fsm.LocalAccount, bool)
	// Guard is the node's login throttle, shared with the admin API; it
	// outlives the Manager so that failures still count after the lease
	// is lost and regained (nil: one of the Manager's own).
	Guard *authguard.Guard
	// Limits are shared by every server (nil: NewLimits defaults).
	Limits *Limits
	// Protected refuses a login whose home reaches or contains DataDir or
	// a key file (nil: no check, in tests).
	Protected *confine.Guard
}

// Manager runs one Service per enabled server of the replicated state:
// Update starts the servers that appeared or changed and stops those that
// went away, and the accounts are looked up in the latest state at each
// login, so that account changes need no restart.
type Manager struct {
	cfg ManagerConfig
	log *slog.Logger

	mu      sync.Mutex
	running map[string]*managed
	stale   []*Service         // stopped without every session ending in time
	failed  map[string]failure // servers whose start failed, retried every startRetry
}

type failure struct {
	fp string
	at time.Time
}

// startRetry is how often a server that could not start is tried again.
const startRetry = 5 * time.Second

type managed struct {
	fp  string
	svc *Service
}

// NewManager returns a Manager with no server running.
func NewManager(cfg ManagerConfig) *Manager {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Guard == nil {
		cfg.Guard = authguard.New(authguard.Options{})
	}
	if cfg.Limits == nil {
		cfg.Limits = NewLimits(MaxStartups{}, 0)
	}
	return &Manager{cfg: cfg, log: cfg.Logger.With("component", "listeners"), running: map[string]*managed{}, failed: map[string]failure{}}
}

// Update makes the running servers those of the replicated state's servers
// (fsm.State.Servers). A server that cannot start (port taken, bad TLS key)
// is reported once and tried again every startRetry; the others run
// regardless.
func (m *Manager) Update(servers map[string]fsm.Server) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	want := map[string]string{}
	for name, srv := range servers {
		if srv.Enabled {
			b, _ := json.Marshal(srv)
			want[name] = string(b)
		}
	}
	var stop []*Service
	for name, r := range m.running {
		if want[name] != r.fp {
			stop = append(stop, r.svc)
			delete(m.running, name)
		}
	}
	var errs []error
	if err := m.stopAll(stop); err != nil {
		errs = append(errs, err)
	}
	for _, name := range slices.Sorted(maps.Keys(want)) {
		fp := want[name]
		f, failed := m.failed[name]
		if m.running[name] != nil || failed && f.fp == fp && time.Since(f.at) < startRetry {
			continue
		}
		svc, err := m.start(servers[name])
		if err != nil {
			if !failed || f.fp != fp {
				m.log.Error("server not started; retrying", "server", name, "err", err, "every", startRetry)
			}
			m.failed[name] = failure{fp: fp, at: time.Now()}
			errs = append(errs, fmt.Errorf("server %s: %w", name, err))
			continue
		}
		delete(m.failed, name)
		m.running[name] = &managed{fp: fp, svc: svc}
	}
	for name := range m.failed {
		if _, ok := want[name]; !ok {
			delete(m.failed, name)
		}
	}
	return errors.Join(errs...)
}

// Running lists the servers now open, by name, with their Service.
func (m *Manager) Running() map[string]*Service {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]*Service, len(m.running))
	for name, r := range m.running {
		out[name] = r.svc
	}
	return out
}

// Stop closes every server and session; see Service.Stop.
func (m *Manager) Stop() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	var svcs []*Service
	for _, r := range m.running {
		svcs = append(svcs, r.svc)
	}
	clear(m.running)
	clear(m.failed)
	return m.stopAll(svcs)
}

// Sessions counts the open client sessions of every server, those of
// servers still closing included.
func (m *Manager) Sessions() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for _, r := range m.running {
		n += r.svc.Sessions()
	}
	kept := m.stale[:0]
	for _, s := range m.stale {
		if c := s.Sessions(); c > 0 {
			n += c
			kept = append(kept, s)
		}
	}
	m.stale = kept
	return n
}

// stopAll stops svcs at once; m.mu is held.
func (m *Manager) stopAll(svcs []*Service) error {
	errs := make([]error, len(svcs))
	var wg sync.WaitGroup
	for i, s := range svcs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.Stop()
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			m.stale = append(m.stale, svcs[i])
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) start(srv fsm.Server) (*Service, error) {
	root, err := homeRoot(m.cfg.GatewayHome, srv.Root)
	if err != nil {
		return nil, err
	}
	c := Config{
		Host:        m.cfg.Host,
		Root:        root,
		HostKey:     m.cfg.HostKey,
		Allowed:     m.cfg.Allowed,
		Audit:       m.cfg.Audit,
		Logger:      m.cfg.Logger.With("server", srv.Name),
		StopTimeout: m.cfg.StopTimeout,
		Guard:       m.cfg.Guard,
		Limits:      m.cfg.Limits,
		PasswordHash: func(login string) []byte {
			if !m.homeAllowed(srv.Name, root, login) {
				return nil
			}
			a, _ := m.account(srv.Name, login)
			return a.PasswordHash
		},
	}
	if m.cfg.Recorder != nil {
		c.Recorder = m.cfg.Recorder(srv)
	}
	switch srv.Protocol {
	case fsm.ProtoSFTP:
		c.SFTPPort = srv.Port
		c.AuthenticateKey = func(login string, key ssh.PublicKey) bool {
			return m.homeAllowed(srv.Name, root, login) && m.checkKey(srv.Name, login, key)
		}
	case fsm.ProtoFTP:
		c.FTPPort = srv.Port
		c.PassiveMin, c.PassiveMax, c.PublicHost = srv.PassiveMin, srv.PassiveMax, srv.PublicHost
		if srv.TLS {
			if c.FTPTLS, err = m.tlsConfig(srv); err != nil {
				return nil, err
			}
			c.FTPTLSRequired = srv.TLSRequired
		}
	default:
		return nil, fmt.Errorf("unknown protocol %q", srv.Protocol)
	}
	svc := New(c)
	if err := svc.Start(); err != nil {
		return nil, err
	}
	return svc, nil
}

// homeAllowed refuses an account whose home would reach or contain a
// protected path (DataDir inside GatewayHome, a key file): its session
// could read or overwrite what the gateway must keep.
func (m *Manager) homeAllowed(server, root, login string) bool {
	home := filepath.Join(root, login)
	if err := m.cfg.Protected.Tree(home); err != nil {
		m.log.Error("login refused: account home is protected", "server", server, "account", login, "home", home, "err", err)
		return false
	}
	return true
}

// homeRoot is GatewayHome/rel, refusing a rel that leaves GatewayHome.
func homeRoot(home, rel string) (string, error) {
	if rel == "" {
		return home, nil
	}
	if !filepath.IsLocal(rel) {
		return "", fmt.Errorf("root %q is not inside GatewayHome", rel)
	}
	return filepath.Join(home, rel), nil
}

func (m *Manager) tlsConfig(srv fsm.Server) (*tls.Config, error) {
	if m.cfg.Unseal == nil {
		return nil, errors.New("FTPS key cannot be opened: no AES passphrase")
	}
	key, err := m.cfg.Unseal(srv.TLSKey)
	if err != nil {
		return nil, fmt.Errorf("FTPS key: %w", err)
	}
	cert, err := tls.X509KeyPair([]byte(srv.TLSCert), key)
	if err != nil {
		return nil, fmt.Errorf("FTPS certificate: %w", err)
	}
	// Each handshake's signature takes a heavy-work slot (authguard).
	cert = m.cfg.Guard.TLSCertificate(cert)
	return &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}, nil
}

func (m *Manager) account(server, login string) (fsm.LocalAccount, bool) {
	if m.cfg.Account == nil {
		return fsm.LocalAccount{}, false
	}
	return m.cfg.Account(server, login)
}

func (m *Manager) checkKey(server, login string, key ssh.PublicKey) bool {
	a, ok := m.account(server, login)
	if !ok {
		return false
	}
	want := key.Marshal()
	for _, line := range a.PublicKeys {
		k, _, _, _, err := ssh.ParseAuthorizedKey([]byte(line))
		if err == nil && bytes.Equal(k.Marshal(), want) {
			return true
		}
	}
	return false
}
