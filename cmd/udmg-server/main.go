// Command udmg-server runs one node of the gateway cluster: it loads
// server.ini, joins or forms the cluster, serves the admin API, and opens the
// SFTP and FTP listeners only while this node is ACTIVE.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/udmg/gateway/authguard"
	"github.com/udmg/gateway/cluster"
	"github.com/udmg/gateway/config"
	"github.com/udmg/gateway/httpapi"
	"github.com/udmg/gateway/licensing"
	"github.com/udmg/gateway/logs"
	"github.com/udmg/gateway/mirror"
	"github.com/udmg/gateway/transfer"
	"github.com/udmg/gateway/version"
)

func main() {
	path := flag.String("c", "", "path to server.ini (default: built-in settings and UDMG_* environment variables)")
	logFormat := flag.String("log-format", "", "text or json (overrides [log] Format and UDMG_LOG_FORMAT)")
	showVersion := flag.Bool("version", false, "print the version, commit and Go version, and exit")
	check := flag.String("check-config", "", "load and validate `FILE` (and UDMG_* overrides) as start-up does, print \"FILE: ok\" or the error, exit 0 or 1; starts nothing")
	flag.Parse()
	if *showVersion {
		fmt.Println(version.Read().Line("udmg-server"))
		return
	}
	if *check != "" {
		os.Exit(checkConfig(*check, os.Environ(), os.Stdout, os.Stderr))
	}
	env := os.Environ()
	switch *logFormat {
	case "":
	case "text", "json":
		env = append(env, "UDMG_LOG_FORMAT="+*logFormat)
	default:
		fmt.Fprintf(os.Stderr, "udmg-server: -log-format %q: use text or json\n", *logFormat)
		os.Exit(2)
	}
	if err := run(*path, env); err != nil {
		fmt.Fprintln(os.Stderr, "udmg-server:", err)
		os.Exit(2)
	}
}

func run(path string, env []string) error {
	cfg, err := config.Load(path, env)
	if err != nil {
		return err
	}
	log := newLogger(cfg.Log)
	where := cfg.File
	if where == "" {
		where = "settings"
	}

	// Said once the configuration passed, so that a refusal stays one line.
	loopback := false
	if cluster.LoneNode(cfg.Cluster.Join, cfg.Cluster.BootstrapExpect, cfg.Cluster.JoinToken, cfg.Cluster.TLSCert) {
		raftBind, gossipBind := cluster.LoneBinds(cfg.Cluster.RaftAddress, cfg.Cluster.GossipAddress)
		loopback = raftBind != cfg.Cluster.RaftAddress || gossipBind != cfg.Cluster.GossipAddress
		cfg.Cluster.RaftAddress, cfg.Cluster.GossipAddress = raftBind, gossipBind
	}

	// Everything that can be refused is checked before DataDir is touched.
	adminAddr := net.JoinHostPort(cfg.Admin.Host, strconv.Itoa(cfg.Admin.Port))
	adminLn, err := net.Listen("tcp", adminAddr)
	if err != nil {
		return fmt.Errorf("%s: [admin] Port %d: %w", where, cfg.Admin.Port, unwrapOp(err))
	}
	defer adminLn.Close()
	if err := checkFree(where, cfg); err != nil {
		return err
	}
	gossipKeys, err := decodeGossipKeys(where, cfg)
	if err != nil {
		return err
	}
	advertise, err := cluster.ResolveAdvertise(cfg.Cluster.AdvertiseHost, cfg.Cluster.RaftAddress)
	if err != nil {
		return err
	}
	hostname, _ := os.Hostname()
	// DataDir is the node's alone: 0700, its files 0600 (datadir.go).
	if err := secureDataDir(cfg.Cluster.DataDir, cfg.Paths.GatewayHome); err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}
	if cfg.Database.Type == "sqlite" {
		if err := precreate(filepath.Join(cfg.Cluster.DataDir, "udmg.db")); err != nil {
			return fmt.Errorf("%s: %w", where, err)
		}
	}
	id, fresh, err := cluster.LoadNodeID(cfg.Cluster.DataDir, cfg.Global.NodeID,
		cluster.DefaultNodeID(hostname, cfg.Admin.Host, cfg.Admin.Port, cfg.Global.GatewayName))
	if err != nil {
		return err
	}
	if fresh {
		if err := cluster.SaveNodeID(cfg.Cluster.DataDir, id); err != nil {
			return err
		}
	}

	identity, err := cluster.LoadIdentity(cluster.IdentityConfig{
		NodeID: id, Name: cfg.Global.GatewayName, Tokens: cluster.ParseTokens(cfg.Cluster.JoinToken),
		CertFile: cfg.Cluster.TLSCert, KeyFile: cfg.Cluster.TLSKey, CAFile: cfg.Cluster.TLSCA, GossipKeys: gossipKeys,
	})
	if err != nil {
		return fmt.Errorf("%s: %w", where, err)
	}

	addr, err := openVIP(where, cfg, log)
	if err != nil {
		return err
	}

	licenseFile, licenseRefused := loadLicense(cfg, log)
	mirrorDB, err := openMirror(cfg, log)
	if err != nil {
		return fmt.Errorf("%s: [database]: %w", where, err)
	}
	reg := newMetrics(log)
	onRenewal, err := reg.LeaseRenewals()
	if err != nil {
		log.Warn("lease renewal metrics not exported", "err", err)
	}
	onRenewal = addr.onRenewal(onRenewal)
	loginFailed, err := reg.LoginFailures()
	if err != nil {
		log.Warn("login failure metrics not exported", "err", err)
	}
	// One login throttle for the admin API and the SFTP/FTP listeners,
	// its failures shared with the other nodes through gossip.
	var shareLogins atomic.Pointer[cluster.Node]
	logins := authguard.New(authguard.Options{Share: func(addr, account string) {
		loginFailed("local")
		if n := shareLogins.Load(); n != nil {
			n.ShareLoginFailure(addr, account)
		}
	}})
	if err := reg.PasswordChecks(logins.Compares, logins.Remembered); err != nil {
		log.Warn("password check metrics not exported", "err", err)
	}
	secrets, err := openSecrets(where, cfg)
	if err != nil {
		mirrorDB.close(nil)
		return err
	}
	guard, err := protectedPaths(where, cfg)
	if err != nil {
		mirrorDB.close(nil)
		return err
	}
	transferIDs := &transfer.IDs{}
	services := &countedServices{mftServices: newMFTServices(cfg, log, secrets, guard, transferIDs, mirrorDB.store)}
	services.vip = addr
	services.logins = logins
	if loopback {
		log.Info("lone node without [cluster] Join, JoinToken or TLSCert: Raft and gossip bound to loopback", "raft", cfg.Cluster.RaftAddress, "gossip", cfg.Cluster.GossipAddress)
	}
	node, err := cluster.Start(cluster.Config{
		NodeID:          id,
		DataDir:         cfg.Cluster.DataDir,
		RaftBind:        cfg.Cluster.RaftAddress,
		GossipBind:      cfg.Cluster.GossipAddress,
		AdvertiseHost:   advertise,
		Join:            cfg.Cluster.Join,
		BootstrapExpect: cfg.Cluster.BootstrapExpect,
		Identity:        identity,
		Heartbeat:       cfg.Controller.Heartbeat,
		Deadline:        cfg.Controller.Deadline,
		HeartbeatCheck:  cfg.Controller.HeartbeatCheck,
		Hostname:        hostname,
		AdminHost:       cfg.Admin.Host,
		AdminPort:       cfg.Admin.Port,
		InitialUser:     cfg.Admin.InitialUser,
		InitialPassword: cfg.Admin.InitialPassword,
		License:         licenseFile,
		LicenseRefused:  licenseRefused,
		OnOffline:       mirrorDB.writer.SubmitOffline,
		OnRenewal:       onRenewal,
		OnLoginFailure:  func(addr, account string) { loginFailed("peer"); logins.RemoteFailed(addr, account) },
		LeaseGrace:      addr.grace(),
		UndeclaredGrace: addr.undeclaredGrace(),
		Secrets:         secrets,
		Services:        services,
		Logger:          log,
	})
	if err != nil {
		mirrorDB.close(nil)
		return err
	}
	bindSecrets(secrets, node)
	services.node.Store(node)
	addr.started(node)
	shareLogins.Store(node)
	stopMetrics := watchNode(reg, node, services, log)
	defer stopMetrics()
	mirrorDB.run(node, mirror.Row{NodeID: id, Hostname: hostname, IPAddress: advertise, Port: cfg.Admin.Port, StartedAt: node.StartedAt()})
	// Again, now that Raft, its snapshots and the database are open.
	if err := secureDataDir(cfg.Cluster.DataDir, cfg.Paths.GatewayHome); err != nil {
		log.Warn("DataDir modes not tightened", "err", err)
	}

	api := httpapi.New(httpapi.Options{
		ForwardDial: node.DialForward,
		Node:        node,
		Identity:    httpapi.Identity{Hostname: hostname, IP: advertise, Port: cfg.Admin.Port},
		Table:       mirrorDB.store,
		Logger:      log,
		MFT:         httpapi.MFT{Secrets: secrets, Protected: guard, GatewayHome: cfg.Paths.GatewayHome, IDs: transferIDs, History: mirrorDB.store},
		Metrics:     reg.Handler(),
		Guard:       logins,
	})
	srv := httpapi.NewServer(api, log)
	// Writes forwarded by peers arrive on the Raft port's mutual TLS
	// (cluster.Node.ForwardListener), answered by the same API.
	fwdSrv := httpapi.NewServer(api, log)
	go fwdSrv.Serve(node.ForwardListener())
	serveErr := make(chan error, 1)
	go func() {
		if cfg.Admin.TLSCert != "" {
			serveErr <- serveAdminTLS(srv, adminLn, cfg.Admin.TLSCert, cfg.Admin.TLSKey, logins)
		} else {
			serveErr <- srv.Serve(adminLn)
		}
	}()
	scheme := "http"
	if cfg.Admin.TLSCert != "" {
		scheme = "https"
	}
	log.Info("admin API listening", "url", scheme+"://"+adminAddr, "ping", scheme+"://"+adminAddr+"/ping")

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	select {
	case s := <-sig:
		log.Info("stopping", "signal", s.String())
	case err := <-serveErr:
		log.Error("admin API stopped", "err", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	nodeErr := node.Shutdown(ctx)
	mirrorDB.close(node)
	srv.Shutdown(ctx)
	fwdSrv.Shutdown(ctx)
	if nodeErr != nil {
		return nodeErr // the fence stays: the address may still be up
	}
	addr.close()
	log.Info("stopped")
	return nil
}

// loadLicense reads [license] File. An invalid file is refused with one log
// line and leaves this node UNLICENSED; it never stops the node.
func loadLicense(cfg *config.Config, log *slog.Logger) (raw []byte, refused bool) {
	if cfg.License.File == "" {
		return nil, false
	}
	l, err := licensing.Load(cfg.License.File, licensing.VendorKey, time.Now())
	if err != nil {
		log.Error("license refused; this node runs UNLICENSED", "err", err)
		return nil, true
	}
	raw, err = os.ReadFile(cfg.License.File)
	if err != nil {
		log.Error("license refused; this node runs UNLICENSED", "err", err)
		return nil, true
	}
	log.Info("license loaded", "licensee", l.Licensee, "nodes", l.Nodes, "expires", l.Expires.Format(time.DateOnly))
	return raw, false
}

// checkFree refuses to start when a port this node will need is taken, so
// that a misconfigured node fails at once rather than when it becomes ACTIVE.
func checkFree(where string, cfg *config.Config) error {
	type port struct{ key, network, addr string }
	lh := cfg.Listeners.Host
	ports := []port{
		{"[cluster] RaftAddress", "tcp", cfg.Cluster.RaftAddress},
		{"[cluster] GossipAddress", "tcp", cfg.Cluster.GossipAddress},
		{"[cluster] GossipAddress", "udp", cfg.Cluster.GossipAddress},
		{"[listeners] SFTPPort", "tcp", net.JoinHostPort(lh, strconv.Itoa(cfg.Listeners.SFTPPort))},
		{"[listeners] FTPPort", "tcp", net.JoinHostPort(lh, strconv.Itoa(cfg.Listeners.FTPPort))},
	}
	for _, p := range ports {
		var err error
		if p.network == "udp" {
			var c net.PacketConn
			if c, err = net.ListenPacket(p.network, p.addr); err == nil {
				c.Close()
			}
		} else {
			var l net.Listener
			if l, err = probeListen(cfg, p.network, p.addr); err == nil {
				l.Close()
			}
		}
		if err != nil {
			return fmt.Errorf("%s: %s %s (%s): %w", where, p.key, p.addr, p.network, unwrapOp(err))
		}
	}
	return nil
}

// unwrapOp keeps the cause of a net.OpError ("address already in use").
func unwrapOp(err error) error {
	var op *net.OpError
	if errors.As(err, &op) {
		return op.Err
	}
	return err
}

func newLogger(c config.Log) *slog.Logger {
	var level slog.Level
	level.UnmarshalText([]byte(c.Level))
	opts := &slog.HandlerOptions{Level: level}
	var h slog.Handler = slog.NewTextHandler(os.Stderr, opts)
	if c.Format == "json" {
		h = slog.NewJSONHandler(os.Stderr, opts)
	}
	return slog.New(logs.Fold(h, logFoldWindow))
}

// logFoldWindow is how long a repeated log line stays folded before it is
// written again with its count.
const logFoldWindow = 10 * time.Second
