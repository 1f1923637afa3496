package config

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// writeINI puts content in a fresh server.ini and returns its path.
func writeINI(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "server.ini")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// public drops bookkeeping so configs can be compared by what callers see.
func public(c *Config) Config {
	out := *c
	out.origins = nil
	return out
}

func TestDefaultIsValidAndIsWhatLoadGivesWithoutInput(t *testing.T) {
	d := Default()
	if err := d.Validate(); err != nil {
		t.Fatalf("Default().Validate() = %v", err)
	}
	want := Config{
		Global:   Global{GatewayName: "mft"},
		Paths:    Paths{GatewayHome: "./data/home"},
		Admin:    Admin{Host: "127.0.0.1", Port: 8080, InitialUser: "admin"},
		Database: Database{Type: "sqlite", Address: "localhost:5432", Name: "udmg", User: "udmg_user"},
		Controller: Controller{
			Heartbeat: 500 * time.Millisecond, Deadline: 2 * time.Second, HeartbeatCheck: time.Second,
		},
		Cluster:   Cluster{DataDir: "./data/node", RaftAddress: ":8300", GossipAddress: ":7946", BootstrapExpect: 1},
		Listeners: Listeners{Host: "0.0.0.0", SFTPPort: 2222, FTPPort: 2121, PassivePorts: "30000-30009", PassiveMin: 30000, PassiveMax: 30009},
		Log:       Log{Level: "info", Format: "text"},
	}
	if got := public(d); !reflect.DeepEqual(got, want) {
		t.Errorf("Default() =\n%+v\nwant\n%+v", got, want)
	}

	loaded, err := Load("", []string{"PATH=/usr/bin", "HOME=/root", "udmg_admin_port=1"})
	if err != nil {
		t.Fatalf("Load(\"\", unrelated env) = %v", err)
	}
	if got := public(loaded); !reflect.DeepEqual(got, want) {
		t.Errorf("Load(\"\", nil) =\n%+v\nwant\n%+v", got, want)
	}
}

const fullFile = `; server.ini for node1, in the seed's style
# hash comments work too

[global]
; The name given to identify this gateway instance.
GatewayName = gw-east
NodeID = node1:8080-gw-east-0

[paths]
GatewayHome = /data/root

[admin]
Host = 10.0.0.1   ; inline comment after a space
Port = 9443       # another inline comment
TLSCert = /etc/udmg/admin.crt
TLSKey = /etc/udmg/admin.key
InitialUser = root
InitialPassword = "s3cret ; with # symbols"

[database]
; Type of the RDBMS used for the gateway database.
Type = postgresql
Address = db:5432
Name = udmg
User = udmg_user
Password = pa#ss;word
; TLSCert =
; TLSKey =
AESPassphrase = /data/passphrase.aes

[controller]
Heartbeat = 1s
Deadline = 5s
HeartbeatCheck = 2s

[cluster]
DataDir = /var/lib/udmg
RaftAddress = 0.0.0.0:8300
GossipAddress = 0.0.0.0:7946
AdvertiseHost = node1
Join = node2:7946, node3:7946
BootstrapExpect = 3
GossipKey = c2VjcmV0c2VjcmV0c2VjcmV0MTI=
TLSCert = /etc/udmg/node.crt
TLSKey = /etc/udmg/node.key
TLSCA = /etc/udmg/ca.crt

[listeners]
Host = 127.0.0.2
SFTPPort = 22
FTPPort = 21
PassivePorts = 40000-40099
PublicHost = mft.example.com

[license]
File = /etc/udmg/license.json

[log]
Level = debug
Format = json
`

func TestLoadFullFile(t *testing.T) {
	path := writeINI(t, fullFile)
	got, err := Load(path, nil)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	want := Config{
		File:   path,
		Global: Global{GatewayName: "gw-east", NodeID: "node1:8080-gw-east-0"},
		Paths:  Paths{GatewayHome: "/data/root"},
		Admin: Admin{Host: "10.0.0.1", Port: 9443, TLSCert: "/etc/udmg/admin.crt", TLSKey: "/etc/udmg/admin.key",
			InitialUser: "root", InitialPassword: "s3cret ; with # symbols"},
		Database: Database{Type: "postgresql", Address: "db:5432", Name: "udmg", User: "udmg_user",
			Password: "pa#ss;word", AESPassphrase: "/data/passphrase.aes"},
		Controller: Controller{Heartbeat: time.Second, Deadline: 5 * time.Second, HeartbeatCheck: 2 * time.Second},
		Cluster: Cluster{DataDir: "/var/lib/udmg", RaftAddress: "0.0.0.0:8300", GossipAddress: "0.0.0.0:7946",
			AdvertiseHost: "node1", Join: []string{"node2:7946", "node3:7946"}, BootstrapExpect: 3,
			GossipKey: "c2VjcmV0c2VjcmV0c2VjcmV0MTI=", TLSCert: "/etc/udmg/node.crt", TLSKey: "/etc/udmg/node.key", TLSCA: "/etc/udmg/ca.crt"},
		Listeners: Listeners{Host: "127.0.0.2", SFTPPort: 22, FTPPort: 21, PassivePorts: "40000-40099",
			PassiveMin: 40000, PassiveMax: 40099, PublicHost: "mft.example.com"},
		License: License{File: "/etc/udmg/license.json"},
		Log:     Log{Level: "debug", Format: "json"},
	}
	if g := public(got); !reflect.DeepEqual(g, want) {
		t.Errorf("Load(full file) =\n%+v\nwant\n%+v", g, want)
	}
}

func TestEnvOverridesWinOverFile(t *testing.T) {
	path := writeINI(t, `
[paths]
GatewayHome = /from/file
[admin]
Port = 9000
[controller]
Heartbeat = 1s
Deadline = 5s
[cluster]
Join = file1:7946
[listeners]
PassivePorts = 40000-40009
`)
	env := []string{
		"PATH=/usr/bin",
		"UDMG_ADMIN_PORT=9100",
		"UDMG_CONTROLLER_HEARTBEAT=250ms",
		"UDMG_CLUSTER_JOIN= a:7946, ,b:7946 ,",
		"UDMG_CLUSTER_JOINTOKEN=t",
		"UDMG_PATHS_GATEWAYHOME=/from/env",
		"UDMG_LISTENERS_PASSIVEPORTS=50000-50004",
		"UDMG_ADMIN_INITIALPASSWORD=",
		"UDMG_TRANSFER_CHECKPOINTBYTES=-1",
	}
	c, err := Load(path, env)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"Admin.Port", c.Admin.Port, 9100},
		{"Controller.Heartbeat", c.Controller.Heartbeat, 250 * time.Millisecond},
		{"Controller.Deadline (file only)", c.Controller.Deadline, 5 * time.Second},
		{"Cluster.Join", c.Cluster.Join, []string{"a:7946", "b:7946"}},
		{"Paths.GatewayHome", c.Paths.GatewayHome, "/from/env"},
		{"Database.AESPassphrase stays empty", c.Database.AESPassphrase, ""},
		{"Listeners.PassivePorts", c.Listeners.PassivePorts, "50000-50004"},
		{"Listeners.PassiveMin", c.Listeners.PassiveMin, 50000},
		{"Listeners.PassiveMax", c.Listeners.PassiveMax, 50004},
		{"Admin.InitialPassword", c.Admin.InitialPassword, ""},
		{"Transfer.CheckpointBytes", c.Transfer.CheckpointBytes, int64(-1)},
		{"File", c.File, path},
	}
	for _, ch := range checks {
		if !reflect.DeepEqual(ch.got, ch.want) {
			t.Errorf("%s = %#v, want %#v", ch.name, ch.got, ch.want)
		}
	}
}

func TestAESPassphrase(t *testing.T) {
	tests := []struct {
		name, ini string
		env       []string
		want      string
	}{
		{"empty by default (the key is derived from JoinToken)", "", nil, ""},
		{"home from file does not make one", "[paths]\nGatewayHome = /data/root\n", nil, ""},
		{"explicit outside GatewayHome", "[paths]\nGatewayHome = /data/root\n[database]\nAESPassphrase = /keys/p.aes\n", nil, "/keys/p.aes"},
		{"next to GatewayHome is outside", "[paths]\nGatewayHome = /data/root\n[database]\nAESPassphrase = /data/rootkey.aes\n", nil, "/data/rootkey.aes"},
		{"explicit empty", "[paths]\nGatewayHome = /data/root\n[database]\nAESPassphrase =\n", nil, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := Load(writeINI(t, tt.ini), tt.env)
			if err != nil {
				t.Fatal(err)
			}
			if c.Database.AESPassphrase != tt.want {
				t.Errorf("AESPassphrase = %q, want %q", c.Database.AESPassphrase, tt.want)
			}
		})
	}
}

func TestJoin(t *testing.T) {
	tests := []struct {
		value string
		want  []string
	}{
		{"", nil},
		{"node2:7946", []string{"node2:7946"}},
		{"node2:7946,node3:7946", []string{"node2:7946", "node3:7946"}},
		{"  node2:7946 ,  node3  ", []string{"node2:7946", "node3"}},
		{",, node2 ,,", []string{"node2"}},
		{" , ", nil},
	}
	for _, tt := range tests {
		t.Run(tt.value, func(t *testing.T) {
			fromFile, err := Load(writeINI(t, "[cluster]\nJoinToken = t\nJoin = "+tt.value+"\n"), nil)
			if err != nil {
				t.Fatal(err)
			}
			fromEnv, err := Load("", []string{"UDMG_CLUSTER_JOIN=" + tt.value, "UDMG_CLUSTER_JOINTOKEN=t"})
			if err != nil {
				t.Fatal(err)
			}
			for src, got := range map[string][]string{"file": fromFile.Cluster.Join, "env": fromEnv.Cluster.Join} {
				if !reflect.DeepEqual(got, tt.want) {
					t.Errorf("Join from %s = %#v, want %#v", src, got, tt.want)
				}
			}
		})
	}
}

func TestComments(t *testing.T) {
	tests := []struct {
		name, line string
		want       string
	}{
		{"no comment", "Password = plain", "plain"},
		{"semicolon inline", "Password = plain ; comment", "plain"},
		{"hash inline", "Password = plain # comment", "plain"},
		{"symbols inside a value", "Password = pa#ss;wo;rd", "pa#ss;wo;rd"},
		{"double quotes keep symbols", `Password = "a ; b # c"`, "a ; b # c"},
		{"backquotes keep symbols", "Password = `a ; b`", "a ; b"},
		{"trailing backslash is kept", `Password = ends\`, `ends\`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			content := "; leading comment\n# another\n[database]\n  ; indented comment\n" + tt.line + "\n; Password = commented out\n"
			c, err := Load(writeINI(t, content), nil)
			if err != nil {
				t.Fatal(err)
			}
			if c.Database.Password != tt.want {
				t.Errorf("Password = %q, want %q", c.Database.Password, tt.want)
			}
		})
	}
}

func TestLoadErrors(t *testing.T) {
	// In want, FILE stands for the server.ini path of the case.
	tests := []struct {
		name string
		ini  string // "" = no file
		env  []string
		want string
	}{
		// Values from the file.
		{"duration", "[controller]\nHeartbeat = fast\n", nil,
			`FILE: [controller] Heartbeat: "fast" is not a duration (use e.g. 500ms, 2s)`},
		{"duration without unit", "[controller]\nDeadline = 5\n", nil,
			`FILE: [controller] Deadline: "5" is not a duration (use e.g. 500ms, 2s)`},
		{"deadline below 3 heartbeats", "[controller]\nDeadline = 1s\n", nil,
			`FILE: [controller] Deadline (1s) must be at least 3 × Heartbeat (500ms)`},
		{"heartbeat check longer than deadline", "[controller]\nHeartbeatCheck = 3s\n", nil,
			`FILE: [controller] HeartbeatCheck (3s) must not be longer than Deadline (2s)`},
		{"zero heartbeat", "[controller]\nHeartbeat = 0s\n", nil,
			`FILE: [controller] Heartbeat: must be greater than 0 (got 0s)`},
		{"negative heartbeat check", "[controller]\nHeartbeatCheck = -1s\n", nil,
			`FILE: [controller] HeartbeatCheck: must be greater than 0 (got -1s)`},
		{"port not a number", "[admin]\nPort = http\n", nil,
			`FILE: [admin] Port: "http" is not a port number (1-65535)`},
		{"port too large", "[admin]\nPort = 70000\n", nil,
			`FILE: [admin] Port: 70000 is not a port number (1-65535)`},
		{"port zero", "[listeners]\nSFTPPort = 0\n", nil,
			`FILE: [listeners] SFTPPort: 0 is not a port number (1-65535)`},
		{"empty port", "[listeners]\nFTPPort =\n", nil,
			`FILE: [listeners] FTPPort: "" is not a port number (1-65535)`},
		{"bootstrap expect zero", "[cluster]\nBootstrapExpect = 0\n", nil,
			`FILE: [cluster] BootstrapExpect: 0 must be at least 1`},
		{"bootstrap expect word", "[cluster]\nBootstrapExpect = two\n", nil,
			`FILE: [cluster] BootstrapExpect: "two" is not a whole number`},
		{"checkpoint bytes below -1", "[transfer]\nCheckpointBytes = -2\n", nil,
			`FILE: [transfer] CheckpointBytes: "-2" is not a byte count (0 = default, -1 = no checkpoints)`},
		{"database type", "[database]\nType = mysql\n", nil,
			`FILE: [database] Type: "mysql" is not a database type (use sqlite or postgresql)`},
		{"postgresql needs an address", "[database]\nType = postgresql\nAddress =\n", nil,
			`FILE: [database] Address: must not be empty when Type is postgresql`},
		{"log level", "[log]\nLevel = verbose\n", nil,
			`FILE: [log] Level: "verbose" is not a log level (use debug, info, warn or error)`},
		{"log format", "[log]\nFormat = xml\n", nil,
			`FILE: [log] Format: "xml" is not a log format (use text or json)`},
		{"passive ports reversed", "[listeners]\nPassivePorts = 30009-30000\n", nil,
			`FILE: [listeners] PassivePorts: 30009-30000 ends before it starts (write the lower port first)`},
		{"passive ports not a range", "[listeners]\nPassivePorts = 30000\n", nil,
			`FILE: [listeners] PassivePorts: "30000" is not a port range (use e.g. 30000-30009)`},
		{"passive ports out of range", "[listeners]\nPassivePorts = 0-10\n", nil,
			`FILE: [listeners] PassivePorts: 0-10: 0 is not a port number (1-65535)`},
		{"initial password over 72 bytes", "[admin]\nInitialPassword = " + strings.Repeat("p", 73) + "\n", nil,
			`FILE: [admin] InitialPassword: too long: 73 bytes, at most 72 (bcrypt ignores the rest)`},
		{"gateway name empty", "[global]\nGatewayName =\n", nil,
			`FILE: [global] GatewayName: must not be empty`},
		{"gateway name with space", "[global]\nGatewayName = my gw\n", nil,
			`FILE: [global] GatewayName: "my gw" must not contain whitespace or '/' (it is part of node IDs)`},
		{"gateway name with slash", "[global]\nGatewayName = a/b\n", nil,
			`FILE: [global] GatewayName: "a/b" must not contain whitespace or '/' (it is part of node IDs)`},
		{"admin cert without key", "[admin]\nTLSCert = /a.crt\n", nil,
			`FILE: [admin] TLSKey: must be set when TLSCert is set`},
		{"cluster TLS incomplete", "[cluster]\nTLSCert = /n.crt\nTLSKey = /n.key\n", nil,
			`FILE: [cluster] TLSCA: must be set when TLSCert is set (node TLS needs TLSCert, TLSKey and TLSCA)`},
		{"raft address without port", "[cluster]\nRaftAddress = node1\n", nil,
			`FILE: [cluster] RaftAddress: "node1" is not host:port (use e.g. :8300 or 10.0.0.5:8300)`},
		{"gossip port out of range", "[cluster]\nGossipAddress = :99999\n", nil,
			`FILE: [cluster] GossipAddress: ":99999": 99999 is not a port number (1-65535)`},
		{"two listeners on one port", "[listeners]\nSFTPPort = 2121\n", nil,
			`FILE: [listeners] SFTPPort (2121) and [listeners] FTPPort (2121) both use port 2121`},
		{"listener inside passive range", "[listeners]\nPassivePorts = 2000-2200\n", nil,
			`FILE: [listeners] FTPPort (2121) and [listeners] PassivePorts (2000-2200) both use port 2121`},
		{"admin and raft on one port", "[admin]\nPort = 8300\n", nil,
			`FILE: [admin] Port (8300) and [cluster] RaftAddress (8300) both use port 8300`},

		// Structure of the file.
		{"unknown key", "[admin]\nColour = blue\n", nil,
			`FILE: [admin] Colour: unknown key (keys in [admin]: Host, Port, TLSCert, TLSKey, InitialUser, InitialPassword)`},
		{"misspelt key", "[admin]\nPrt = 1\n", nil,
			`FILE: [admin] Prt: unknown key (did you mean Port?)`},
		{"key names are case-sensitive", "[controller]\nheartbeat = 1s\n", nil,
			`FILE: [controller] heartbeat: unknown key (did you mean Heartbeat?)`},
		{"key from another section", "[admin]\nTLSCA = /ca.crt\n", nil,
			`FILE: [admin] TLSCA: unknown key (it belongs in [cluster])`},
		{"misspelt section", "[controler]\nHeartbeat = 1s\n", nil,
			`FILE: [controler]: unknown section (did you mean [controller]?)`},
		{"section names are case-sensitive", "[Admin]\nPort = 1\n", nil,
			`FILE: [Admin]: unknown section (did you mean [admin]?)`},
		{"unknown section", "[colours]\nsky = blue\n", nil,
			`FILE: [colours]: unknown section (sections are [global], [paths], [admin], [database], [controller], [cluster], [vip], [listeners], [license], [log], [transfer])`},
		{"key outside any section", "Port = 9000\n[admin]\n", nil,
			`FILE: Port: key outside any section (put it under [admin])`},
		{"key set twice", "[admin]\nPort = 9000\n; a comment\nPort = 9001\n", nil,
			`FILE: [admin] Port: set more than once (keep one line)`},
		{"unclosed section", "; top\n[admin\nPort = 1\n", nil,
			`FILE: line 2: "[admin" is missing its closing "]"`},
		{"line without =", "[admin]\nPort = 1\njunk here\n", nil,
			`FILE: line 3: "junk here" is not "Key = value", a [section] or a comment`},
		{"colon is not a delimiter", "[admin]\nPort: 1\n", nil,
			`FILE: line 2: "Port: 1" is not "Key = value", a [section] or a comment`},
		{"missing key name", "[admin]\n= 1\n", nil,
			`FILE: line 2: "= 1" has no key name before "="`},

		// Environment overrides.
		{"env port", "", []string{"UDMG_ADMIN_PORT=abc"},
			`UDMG_ADMIN_PORT: "abc" is not a port number (1-65535)`},
		{"env port out of range over a file", "[admin]\nPort = 9000\n", []string{"UDMG_ADMIN_PORT=0"},
			`UDMG_ADMIN_PORT: 0 is not a port number (1-65535)`},
		{"env duration", "", []string{"UDMG_CONTROLLER_HEARTBEAT=soon"},
			`UDMG_CONTROLLER_HEARTBEAT: "soon" is not a duration (use e.g. 500ms, 2s)`},
		{"env cross rule without file", "", []string{"UDMG_CONTROLLER_DEADLINE=1s"},
			`UDMG_CONTROLLER_DEADLINE: [controller] Deadline (1s) must be at least 3 × Heartbeat (500ms)`},
		{"cross rule from file and env", "[controller]\nDeadline = 1s\n", []string{"UDMG_CONTROLLER_HEARTBEAT=400ms"},
			`FILE, UDMG_CONTROLLER_HEARTBEAT: [controller] Deadline (1s) must be at least 3 × Heartbeat (400ms)`},
		{"env unknown key", "", []string{"UDMG_ADMIN_COLOUR=blue"},
			`UDMG_ADMIN_COLOUR: no such setting (keys in [admin]: HOST, PORT, TLSCERT, TLSKEY, INITIALUSER, INITIALPASSWORD)`},
		{"env unknown section", "", []string{"UDMG_COLOURS_SKY=blue"},
			`UDMG_COLOURS_SKY: no such setting (overrides are UDMG_<SECTION>_<KEY>, e.g. UDMG_ADMIN_PORT)`},
		{"env misspelt section", "", []string{"UDMG_CONTROLER_HEARTBEAT=1s"},
			`UDMG_CONTROLER_HEARTBEAT: no such setting (did you mean UDMG_CONTROLLER_HEARTBEAT?)`},
		{"env key with extra underscore", "", []string{"UDMG_ADMIN_INITIAL_USER=root"},
			`UDMG_ADMIN_INITIAL_USER: no such setting (did you mean UDMG_ADMIN_INITIALUSER?)`},
		{"env derived field is not a setting", "", []string{"UDMG_LISTENERS_PASSIVEMIN=1"},
			`UDMG_LISTENERS_PASSIVEMIN: no such setting (keys in [listeners]: HOST, SFTPPORT, FTPPORT, PASSIVEPORTS, PUBLICHOST, WRITEAUDIT)`},
		{"write audit in a missing directory", "[listeners]\nWriteAudit = /nonexistent-udmg/audit.jsonl\n", nil,
			`FILE: [listeners] WriteAudit: /nonexistent-udmg/audit.jsonl: directory /nonexistent-udmg does not exist`},
		{"write audit is a directory", "[listeners]\nWriteAudit = /tmp\n", nil,
			`FILE: [listeners] WriteAudit: /tmp is a directory (give a file to append to)`},
		{"write audit among the users' files", "[paths]\nGatewayHome = /tmp/udmg-home\n[listeners]\nWriteAudit = /tmp/udmg-home/audit.jsonl\n", nil,
			`FILE: [listeners] WriteAudit: /tmp/udmg-home/audit.jsonl is inside GatewayHome /tmp/udmg-home (put it outside the users' files)`},
		{"env prefix alone", "", []string{"UDMG_=1"},
			`UDMG_: no such setting (overrides are UDMG_<SECTION>_<KEY>, e.g. UDMG_ADMIN_PORT)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := ""
			if tt.ini != "" {
				path = writeINI(t, tt.ini)
			}
			c, err := Load(path, tt.env)
			if err == nil {
				t.Fatalf("Load succeeded (%+v), want error %q", c, tt.want)
			}
			if c != nil {
				t.Errorf("Load returned a config with its error")
			}
			want := strings.ReplaceAll(tt.want, "FILE", path)
			if err.Error() != want {
				t.Errorf("error\n got: %s\nwant: %s", err, want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
		})
	}
}

func TestLoadFileProblems(t *testing.T) {
	dir := t.TempDir()
	unreadable := filepath.Join(dir, "locked.ini")
	if err := os.WriteFile(unreadable, []byte("[admin]\n"), 0o000); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
		skip             bool
	}{
		{"missing file", filepath.Join(dir, "nope.ini"), filepath.Join(dir, "nope.ini") + ": open: no such file or directory", false},
		{"directory", dir, dir + ": read: is a directory", false},
		{"unreadable", unreadable, unreadable + ": open: permission denied", os.Geteuid() == 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skip {
				t.Skip("root can read any file")
			}
			_, err := Load(tt.path, nil)
			if err == nil || err.Error() != tt.want {
				t.Errorf("Load(%s) error = %v, want %s", tt.path, err, tt.want)
			}
		})
	}
}

func TestLoadTouchesNothing(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "server.ini")
	content := "[paths]\nGatewayHome = " + filepath.Join(dir, "home") + "\n[cluster]\nDataDir = " + filepath.Join(dir, "node") + "\n"
	if err := os.WriteFile(path, []byte(content), 0o400); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(path)
	if _, err := Load(path, nil); err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Errorf("Load created files: %v", entries)
	}
	after, _ := os.Stat(path)
	if !after.ModTime().Equal(before.ModTime()) || after.Mode() != before.Mode() {
		t.Errorf("Load changed %s", path)
	}
}

func TestValidateWithoutFile(t *testing.T) {
	tests := []struct {
		name   string
		change func(*Config)
		want   string
	}{
		{"port", func(c *Config) { c.Admin.Port = 0 }, "[admin] Port: 0 is not a port number (1-65535)"},
		{"deadline", func(c *Config) { c.Controller.Deadline = time.Second },
			"[controller] Deadline (1s) must be at least 3 × Heartbeat (500ms)"},
		{"passive range", func(c *Config) { c.Listeners.PassiveMin, c.Listeners.PassiveMax = 5, 4 },
			"[listeners] PassivePorts: 5-4 ends before it starts (write the lower port first)"},
		{"aes passphrase inside GatewayHome", func(c *Config) { c.Database.AESPassphrase = "data/home/keys/passphrase.aes" },
			"[database] AESPassphrase: data/home/keys/passphrase.aes lies inside [paths] GatewayHome ./data/home, where rules and accounts read and write: move the key file out of it"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := Default()
			tt.change(c)
			if err := c.Validate(); err == nil || err.Error() != tt.want {
				t.Errorf("Validate() = %v, want %s", err, tt.want)
			}
		})
	}
}

func TestEditDistance(t *testing.T) {
	tests := []struct {
		a, b string
		want int
	}{
		{"", "", 0}, {"abc", "", 3}, {"Port", "Prt", 1}, {"kitten", "sitting", 3},
	}
	for _, tt := range tests {
		if got := editDistance(tt.a, tt.b); got != tt.want {
			t.Errorf("editDistance(%q, %q) = %d, want %d", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestLoadSeedStyleFileWithBOMAndCRLF(t *testing.T) {
	seed := "\ufeff[global]\n; The name given to identify this gateway instance.\nGatewayName = mft\n\n" +
		"[database]\n; Type of the RDBMS used for the gateway database. Possible values: sqlite, mysql (default), postgresql, oracle, mssql\n" +
		"Type = postgresql\nAddress = localhost:5432\nPassword = udmg_password\n; TLSCert =\n; TLSKey =\n" +
		"AESPassphrase = /opt/udmg/etc/udmg-server/passphrase.aes\n\n" +
		"[controller]\n; The frequency at which the heartbeat will be updated\nHeartbeat = 10s\nDeadline = 5m\nHeartbeatCheck = 20s\n"
	c, err := Load(writeINI(t, strings.ReplaceAll(seed, "\n", "\r\n")), nil)
	if err != nil {
		t.Fatal(err)
	}
	if c.Global.GatewayName != "mft" || c.Database.Password != "udmg_password" ||
		c.Controller.Deadline != 5*time.Minute || c.Controller.HeartbeatCheck != 20*time.Second {
		t.Errorf("seed-style file read as %+v", public(c))
	}
}

// TestAESPassphraseInsideGatewayHome checks that a key file that resolves
// into GatewayHome is refused with one line naming the key, however the
// path is written: relative, through "..", or through a symlink.
func TestAESPassphraseInsideGatewayHome(t *testing.T) {
	dir := t.TempDir()
	home := filepath.Join(dir, "home")
	if err := os.MkdirAll(filepath.Join(home, "sub"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(home, filepath.Join(dir, "link")); err != nil {
		t.Fatal(err)
	}
	keys := filepath.Join(dir, "keys")
	tests := []struct {
		name, key string
		refused   bool
	}{
		{"in GatewayHome", filepath.Join(home, "passphrase.aes"), true},
		{"through ..", filepath.Join(home, "sub", "..", "k.aes"), true},
		{"through a symlink to GatewayHome", filepath.Join(dir, "link", "k.aes"), true},
		{"a symlink out of GatewayHome is still outside", filepath.Join(keys, "k.aes"), false},
		{"beside GatewayHome", filepath.Join(dir, "home.aes"), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ini := "[paths]\nGatewayHome = " + home + "\n[database]\nAESPassphrase = " + tt.key + "\n"
			_, err := Load(writeINI(t, ini), nil)
			if !tt.refused {
				if err != nil {
					t.Fatalf("Load: %v", err)
				}
				return
			}
			if err == nil {
				t.Fatal("Load accepted a key file inside GatewayHome")
			}
			if msg := err.Error(); !strings.Contains(msg, "[database] AESPassphrase") || !strings.Contains(msg, "GatewayHome") || strings.Contains(msg, "\n") {
				t.Errorf("error %q: want one line naming [database] AESPassphrase and GatewayHome", msg)
			}
		})
	}
	// A relative GatewayHome, as in the default layout, is resolved too.
	t.Chdir(dir)
	if _, err := Load(writeINI(t, "[paths]\nGatewayHome = ./home\n[database]\nAESPassphrase = "+filepath.Join(home, "k")+"\n"), nil); err == nil {
		t.Error("Load accepted an absolute key file inside a relative GatewayHome")
	}
}
