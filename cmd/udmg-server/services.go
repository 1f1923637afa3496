package main

import (
	"fmt"
	"log/slog"
	"path/filepath"
	"sync/atomic"

	"golang.org/x/crypto/ssh"

	"github.com/udmg/gateway/cluster"
	"github.com/udmg/gateway/config"
	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/listeners"
)

// mftServices is what the ACTIVE node runs: the SFTP and FTP listeners,
// built from the replicated state each time the node becomes ACTIVE.
type mftServices struct {
	cfg  listeners.Config
	node atomic.Pointer[cluster.Node]
	svc  *listeners.Service
}

func newMFTServices(cfg *config.Config, log *slog.Logger) *mftServices {
	home, _ := filepath.Abs(cfg.Paths.GatewayHome)
	return &mftServices{cfg: listeners.Config{
		Host:       cfg.Listeners.Host,
		SFTPPort:   cfg.Listeners.SFTPPort,
		FTPPort:    cfg.Listeners.FTPPort,
		PassiveMin: cfg.Listeners.PassiveMin,
		PassiveMax: cfg.Listeners.PassiveMax,
		PublicHost: cfg.Listeners.PublicHost,
		Root:       home,
		Logger:     log,
	}}
}

func (m *mftServices) Start(st fsm.State) error {
	node := m.node.Load()
	if node == nil {
		return fmt.Errorf("node not ready")
	}
	key, err := ssh.ParsePrivateKey(st.HostKey)
	if err != nil {
		return fmt.Errorf("cluster host key: %w", err)
	}
	c := m.cfg
	c.HostKey = key
	// Until local accounts arrive, administrators log in to their own home.
	c.Authenticate = node.Authenticate
	c.Allowed = node.LeaseValid
	m.svc = listeners.New(c)
	return m.svc.Start()
}

func (m *mftServices) Stop() error {
	if m.svc == nil {
		return nil
	}
	return m.svc.Stop()
}
