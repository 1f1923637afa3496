// Package config turns server.ini into the typed settings udmg-server runs
// with. It applies the built-in defaults, then the file, then
// UDMG_<SECTION>_<KEY> environment overrides (how docker compose configures
// nodes), and checks every value and the rules between them, so that a bad
// setting stops start-up with one line naming where it came from. It is the
// only package that reads the environment, and it never creates or changes
// files: it only reads and checks.
package config

import (
	"path/filepath"
	"time"
)

// Config is everything udmg-server needs from server.ini, already checked.
type Config struct {
	File       string // path it was loaded from; "" when only defaults/env
	Global     Global
	Paths      Paths
	Admin      Admin
	Database   Database
	Controller Controller
	Cluster    Cluster
	VIP        VIP
	Listeners  Listeners
	License    License
	Log        Log
	Transfer   Transfer

	// origins records where each explicitly set key came from ("section.Key"
	// -> file path or environment variable name), so that Validate can name
	// the place to fix.
	origins map[string]string
}

// Global identifies this gateway instance ([global]).
type Global struct {
	GatewayName string // part of node IDs and the mirror rows; default "mft"
	NodeID      string // stable node identity; "" = derived by the cluster package
}

// Paths locates shared storage ([paths]).
type Paths struct {
	GatewayHome string // root of the users' files, shared by all nodes; default "./data/home"
}

// Admin configures the REST API, /ping, UI and metrics endpoint ([admin]).
type Admin struct {
	Host            string // listen address; default "127.0.0.1"
	Port            int    // listen port; default 8080
	TLSCert         string // serve HTTPS when set (with TLSKey)
	TLSKey          string // key for TLSCert
	InitialUser     string // first administrator, created at bootstrap; default "admin"
	InitialPassword string // its password; "" = generated and logged once
}

// Database configures the mirror and history store ([database]).
type Database struct {
	Type     string // "sqlite" (embedded, single node) or "postgresql" (clusters); default "sqlite"
	Address  string // PostgreSQL host:port; default "localhost:5432"
	Name     string // PostgreSQL database; default "udmg"
	User     string // PostgreSQL user; default "udmg_user"
	Password string // PostgreSQL password
	TLSCert  string // client certificate for PostgreSQL (with TLSKey)
	TLSKey   string // key for TLSCert
	// AESPassphrase is the operator's key file whose contents seal the
	// cluster's secrets key (instead of [cluster] JoinToken); empty by
	// default; must lie outside GatewayHome.
	AESPassphrase string
}

// Controller holds the lease timings ([controller]); see ARCHITECTURE "The lease".
type Controller struct {
	Heartbeat      time.Duration // how often the ACTIVE node renews its lease; default 500ms
	Deadline       time.Duration // how long a lease lasts without renewal; default 2s, at least 3 × Heartbeat
	HeartbeatCheck time.Duration // how often each node refreshes its status; default 1s, at most Deadline
}

// Cluster configures Raft and gossip membership ([cluster]).
type Cluster struct {
	DataDir         string   // local disk for the raft log, snapshots and node ID; default "./data/node"
	RaftAddress     string   // Raft bind host:port; default ":8300"
	GossipAddress   string   // gossip bind host:port; default ":7946"
	AdvertiseHost   string   // what peers dial; "" = first non-loopback address (resolved by the cluster package)
	Join            []string // gossip addresses of peers; comma-separated in the ini
	BootstrapExpect int      // nodes that must be seen before a new cluster bootstraps; default 1
	// JoinToken is the secret every node of one cluster shares; the
	// nodes derive from it the cluster CA, their certificates, the gossip
	// key and the key that seals the secrets key (cluster.DeriveKey).
	JoinToken string
	GossipKey string // encrypts gossip when set
	TLSCert   string // node certificate for Raft and forwarding (with TLSKey and TLSCA)
	TLSKey    string // key for TLSCert
	TLSCA     string // cluster CA that node certificates are checked against
}

// Listeners configures the SFTP and FTP servers opened by the ACTIVE node ([listeners]).
type Listeners struct {
	Host         string // interface to listen on; default "0.0.0.0"
	SFTPPort     int    // default 2222
	FTPPort      int    // default 2121
	PassivePorts string // FTP passive range as written in the ini, "A-B"; default "30000-30009"
	PassiveMin   int    // first passive port, filled from PassivePorts by Load; default 30000
	PassiveMax   int    // last passive port, filled from PassivePorts by Load; default 30009
	PublicHost   string // address announced in FTP passive replies (behind a load balancer); "" = local address
	// WriteAudit, when set, is a file where the node appends one JSON line
	// per write, rename and delete it makes on GatewayHome, with the lease
	// epoch it was checked under (for fault campaigns); "" = off (default).
	WriteAudit string
}

// License points at the signed license file ([license]).
type License struct {
	File string // "" = one-node evaluation
}

// Log sets what the server logs and how ([log]).
type Log struct {
	Level  string // debug|info|warn|error; default "info"
	Format string // text|json; default "text"
}

// Transfer tunes the client-mode transfer engine ([transfer]).
type Transfer struct {
	// CheckpointBytes is how many bytes a transfer moves between two
	// checkpoints committed through Raft; 0 = the engine's default
	// (16 MiB), -1 = none (only to measure what checkpoints cost: a
	// transfer cut by failover then starts again from zero).
	CheckpointBytes int64
}

// Default returns the built-in configuration (what `make run` uses with no file).
func Default() *Config {
	const home = "./data/home"
	return &Config{
		Global: Global{GatewayName: "mft"},
		Paths:  Paths{GatewayHome: home},
		Admin: Admin{
			Host:        "127.0.0.1",
			Port:        8080,
			InitialUser: "admin",
		},
		Database: Database{
			Type:    "sqlite",
			Address: "localhost:5432",
			Name:    "udmg",
			User:    "udmg_user",
		},
		Controller: Controller{
			Heartbeat:      500 * time.Millisecond,
			Deadline:       2 * time.Second,
			HeartbeatCheck: time.Second,
		},
		Cluster: Cluster{
			DataDir:         "./data/node",
			RaftAddress:     ":8300",
			GossipAddress:   ":7946",
			BootstrapExpect: 1,
		},
		Listeners: Listeners{
			Host:         "0.0.0.0",
			SFTPPort:     2222,
			FTPPort:      2121,
			PassivePorts: "30000-30009",
			PassiveMin:   30000,
			PassiveMax:   30009,
		},
		Log: Log{Level: "info", Format: "text"},
	}
}

// LegacyKeyFile is where the previous release kept the secrets key,
// among the users' files: read once to move it into the cluster state
// (upgrade), and out of reach of every rule, transfer and account.
func (c *Config) LegacyKeyFile() string {
	return filepath.Join(c.Paths.GatewayHome, "passphrase.aes")
}

// Protected lists the paths no rule, transfer or account may read or
// write: DataDir (raft log, node ID, a lone node's key-encryption key),
// the operator's key file and the previous release's key file.
func (c *Config) Protected() []string {
	out := []string{c.Cluster.DataDir, c.LegacyKeyFile()}
	if c.Database.AESPassphrase != "" {
		out = append(out, c.Database.AESPassphrase)
	}
	return out
}
