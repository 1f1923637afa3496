package main

import (
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/ssh"

	"github.com/udmg/gateway/authguard"
	"github.com/udmg/gateway/cluster"
	"github.com/udmg/gateway/config"
	"github.com/udmg/gateway/confine"
	"github.com/udmg/gateway/fsm"
	"github.com/udmg/gateway/listeners"
	"github.com/udmg/gateway/mirror"
	"github.com/udmg/gateway/transfer"
)

// mftServices is what the ACTIVE node runs: the local servers defined in
// the replicated state (started, changed and stopped as the state changes)
// and the transfer engine.
type mftServices struct {
	cfg     *config.Config
	home    string
	log     *slog.Logger
	secrets *transfer.Secrets
	guard   *confine.Guard
	ids     *transfer.IDs
	history transfer.History
	meter   transfer.Meter      // bytes moved, over every term
	tasks   transfer.TaskCounts // tasks run, over every term
	logins  *authguard.Guard    // the node's login throttle, shared with the admin API
	node    atomic.Pointer[cluster.Node]
	vip     *serviceAddress // [vip]: held while ACTIVE; nil when not configured

	// One ACTIVE term: set by Start, cleared by Stop (serialised by the
	// cluster package).
	servers *listeners.Manager
	engine  *transfer.Engine
	audit   *listeners.Audit // [listeners] WriteAudit, nil when off
	stop    chan struct{}
	wg      sync.WaitGroup
}

func newMFTServices(cfg *config.Config, log *slog.Logger, secrets *transfer.Secrets, guard *confine.Guard, ids *transfer.IDs, history mirror.Store) *mftServices {
	home, _ := filepath.Abs(cfg.Paths.GatewayHome)
	return &mftServices{cfg: cfg, home: home, log: log, secrets: secrets, guard: guard, ids: ids, history: history}
}

// pollEvery is how often the ACTIVE node looks for changed servers.
const pollEvery = 100 * time.Millisecond

func (m *mftServices) Start(st fsm.State) (err error) {
	node := m.node.Load()
	if node == nil {
		return errors.New("node not ready")
	}
	// The service address first: listeners may bind it ([listeners] Host).
	if err := m.vip.hold(node); err != nil {
		return err
	}
	defer func() {
		if err != nil {
			err = errors.Join(err, m.vip.drop())
		}
	}()
	if !st.Seeded {
		if err := m.seed(node, st); err != nil {
			return err
		}
		st = node.State()
	}
	pemKey, err := m.secrets.Open(string(st.HostKey))
	if err != nil {
		return fmt.Errorf("cluster host key: %w", err)
	}
	key, err := ssh.ParsePrivateKey(pemKey)
	if err != nil {
		return fmt.Errorf("cluster host key: %w", err)
	}
	var audit *listeners.Audit
	if p := m.cfg.Listeners.WriteAudit; p != "" {
		if audit, err = listeners.OpenAudit(p, node.ID(), func() uint64 { e, _ := node.LeaseRemaining(); return e }); err != nil {
			return err
		}
	}
	engine, err := transfer.Start(transfer.Config{Node: node, GatewayHome: m.home, Protected: m.guard, Secrets: m.secrets, History: m.history,
		IDs: m.ids, Meter: &m.meter, Tasks: &m.tasks, SourceAddr: m.vip.sourceIP(), Logger: m.log, CheckpointBytes: m.cfg.Transfer.CheckpointBytes, Audit: audit})
	if err != nil {
		_ = audit.Close()
		return err
	}
	m.audit = audit
	m.engine = engine
	m.servers = listeners.NewManager(listeners.ManagerConfig{
		Host: m.cfg.Listeners.Host, GatewayHome: m.home, Protected: m.guard, HostKey: key, Allowed: node.LeaseValid, Logger: m.log,
		Unseal: m.secrets.Open, Recorder: engine.Recorder, Account: node.Account, Audit: audit,
		Guard: m.logins,
	})
	// Errors are logged by the manager; one bad server does not keep the
	// others (or the node) from serving.
	m.servers.Update(st.Servers)
	m.stop = make(chan struct{})
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		t := time.NewTicker(pollEvery)
		defer t.Stop()
		for {
			select {
			case <-m.stop:
				return
			case <-t.C:
				m.servers.Update(node.Servers())
			}
		}
	}()
	return nil
}

// seed creates, once per cluster, the servers of [listeners] (SFTPPort,
// FTPPort) with an account for the initial administrator that has the
// administrator's password, so that a fresh node serves at once.
func (m *mftServices) seed(node *cluster.Node, st fsm.State) error {
	epoch, _ := node.LeaseRemaining()
	l := m.cfg.Listeners
	var args fsm.SeedArgs
	admin, hasAdmin := st.Users[m.cfg.Admin.InitialUser]
	add := func(srv fsm.Server) {
		args.Servers = append(args.Servers, srv)
		if hasAdmin {
			args.Accounts = append(args.Accounts, fsm.LocalAccount{Server: srv.Name, Login: admin.Name, PasswordHash: admin.Hash})
		}
	}
	if l.SFTPPort != 0 {
		add(fsm.Server{Name: "sftp", Protocol: fsm.ProtoSFTP, Port: l.SFTPPort, Enabled: true})
	}
	if l.FTPPort != 0 {
		add(fsm.Server{Name: "ftp", Protocol: fsm.ProtoFTP, Port: l.FTPPort, PassiveMin: l.PassiveMin, PassiveMax: l.PassiveMax,
			PublicHost: l.PublicHost, Enabled: true})
	}
	if err := node.Apply(fsm.Command{Op: fsm.OpSeed, Epoch: epoch, Seed: &args}); err != nil {
		return fmt.Errorf("create the default servers: %w", err)
	}
	m.log.Info("default servers created", "sftp_port", l.SFTPPort, "ftp_port", l.FTPPort, "account", admin.Name)
	return nil
}

func (m *mftServices) Stop() error {
	// The service address first: no client or partner may reach this node
	// from here on (fencing and handover both come through here).
	verr := m.vip.drop()
	if m.stop == nil {
		return verr
	}
	close(m.stop)
	m.wg.Wait()
	m.stop = nil
	// Listeners first: their sessions' last records go through the engine.
	err := m.servers.Stop()
	m.engine.Stop()
	if aerr := m.audit.Close(); aerr != nil {
		m.log.Warn("write audit", "err", aerr)
	}
	m.servers, m.engine, m.audit = nil, nil, nil
	return errors.Join(verr, err)
}
