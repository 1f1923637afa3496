package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"

	"gopkg.in/ini.v1"
)

// envPrefix starts every environment override: UDMG_<SECTION>_<KEY>.
const envPrefix = "UDMG_"

// Load reads path (may be "" = defaults only), applies env overrides from env (a list of "K=V" like os.Environ()), validates, and returns the config or ONE error whose message is one readable line.
//
// Order: defaults, then the file, then the environment; the last one wins.
// Relative paths are kept as written (relative to the working directory).
// Load only reads path; it creates nothing.
func Load(path string, env []string) (*Config, error) {
	c := Default()
	c.origins = map[string]string{}

	if path != "" {
		c.File = path
		data, err := os.ReadFile(path)
		if err != nil {
			return nil, fileError(path, err)
		}
		if err := c.applyFile(path, data); err != nil {
			return nil, err
		}
	}
	if err := c.applyEnv(env); err != nil {
		return nil, err
	}
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// fileError turns an os error into "path: open: permission denied".
func fileError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("%s: %s: %v", path, pe.Op, pe.Err)
	}
	return fmt.Errorf("%s: %v", path, err)
}

// setting is one key of server.ini: where it lives, how to store its value
// and what it is for. Its default is the matching field of Default() (the
// Config field named like the key, in the struct named like the section).
type setting struct {
	section, key string
	set          func(c *Config, value string) error // the error is the problem only, without location
	doc          string                              // its meaning, written into deploy/server.ini.example
}

// sectionNames lists the sections in the order of ARCHITECTURE.md.
var sectionNames = []string{"global", "paths", "admin", "database", "controller", "cluster", "vip", "listeners", "license", "log", "transfer"}

// settings is every key server.ini accepts; nothing else is.
var settings = []setting{
	{"global", "GatewayName", text(func(c *Config) *string { return &c.Global.GatewayName }), "Name of this gateway: part of node IDs, the node table's rows and the cluster certificates' DNS name; no whitespace or '/'."},
	{"global", "NodeID", text(func(c *Config) *string { return &c.Global.NodeID }), "Stable identity of this node; empty: <host>:<admin port>-<GatewayName>-0 (the admin address instead of the hostname on loopback), kept in DataDir/node-id and never changed after the first start."},

	{"paths", "GatewayHome", text(func(c *Config) *string { return &c.Paths.GatewayHome }), "Root of the users' files (account homes, rule directories), shared by every node of the cluster."},

	{"admin", "Host", text(func(c *Config) *string { return &c.Admin.Host }), "Address of the REST API, /ping, the admin page and /metrics; must be this node's own address, never the [vip] service address."},
	{"admin", "Port", port(func(c *Config) *int { return &c.Admin.Port }), "Port of the REST API, /ping, the admin page and /metrics."},
	{"admin", "TLSCert", text(func(c *Config) *string { return &c.Admin.TLSCert }), "Certificate file (PEM): the API is served over HTTPS when set, with TLSKey."},
	{"admin", "TLSKey", text(func(c *Config) *string { return &c.Admin.TLSKey }), "Private key file (PEM) of TLSCert."},
	{"admin", "InitialUser", text(func(c *Config) *string { return &c.Admin.InitialUser }), "First administrator, created when the cluster is bootstrapped."},
	{"admin", "InitialPassword", text(func(c *Config) *string { return &c.Admin.InitialPassword }), "Its password (at most 72 bytes); empty: one is generated and logged once at bootstrap."},

	{"database", "Type", text(func(c *Config) *string { return &c.Database.Type }), "Store of the node table and the transfer history: sqlite (embedded file DataDir/udmg.db) or postgresql (one database shared by the cluster)."},
	{"database", "Address", text(func(c *Config) *string { return &c.Database.Address }), "PostgreSQL host:port (Type = postgresql)."},
	{"database", "Name", text(func(c *Config) *string { return &c.Database.Name }), "PostgreSQL database name."},
	{"database", "User", text(func(c *Config) *string { return &c.Database.User }), "PostgreSQL user."},
	{"database", "Password", text(func(c *Config) *string { return &c.Database.Password }), "PostgreSQL password."},
	{"database", "TLSCert", text(func(c *Config) *string { return &c.Database.TLSCert }), "Client certificate file (PEM) for PostgreSQL, with TLSKey."},
	{"database", "TLSKey", text(func(c *Config) *string { return &c.Database.TLSKey }), "Private key file (PEM) of TLSCert."},
	{"database", "AESPassphrase", text(func(c *Config) *string { return &c.Database.AESPassphrase }), "Operator's key file whose contents seal the cluster's secrets key instead of a key derived from [cluster] JoinToken; empty: not used; must lie outside GatewayHome."},

	{"controller", "Heartbeat", duration(func(c *Config) *time.Duration { return &c.Controller.Heartbeat }), "How often the ACTIVE node renews its lease through Raft."},
	{"controller", "Deadline", duration(func(c *Config) *time.Duration { return &c.Controller.Deadline }), "How long a lease lasts after its renewal was proposed; at least 3 x Heartbeat. A successor waits it out before serving."},
	{"controller", "HeartbeatCheck", duration(func(c *Config) *time.Duration { return &c.Controller.HeartbeatCheck }), "How often each node refreshes its status (node table, peer liveness); at most Deadline; Raft's timeouts derive from it."},

	{"cluster", "DataDir", text(func(c *Config) *string { return &c.Cluster.DataDir }), "This node's own disk: Raft log and snapshots, node ID, embedded database (0700, never shared)."},
	{"cluster", "RaftAddress", text(func(c *Config) *string { return &c.Cluster.RaftAddress }), "Raft bind host:port (mutual TLS; also carries forwarded writes); a lone node on the default binds 127.0.0.1."},
	{"cluster", "GossipAddress", text(func(c *Config) *string { return &c.Cluster.GossipAddress }), "Gossip (membership) bind host:port, TCP and UDP; a lone node on the default binds 127.0.0.1."},
	{"cluster", "AdvertiseHost", text(func(c *Config) *string { return &c.Cluster.AdvertiseHost }), "Address peers dial for Raft and gossip; empty: the host of RaftAddress, else the first non-loopback IPv4 address."},
	{"cluster", "Join", func(c *Config, v string) error { c.Cluster.Join = splitList(v); return nil }, "Gossip addresses of peers, comma-separated (host:port, ...)."},
	{"cluster", "BootstrapExpect", count(func(c *Config) *int { return &c.Cluster.BootstrapExpect }), "Nodes that must see each other before a brand-new cluster bootstraps; a node with Raft state never bootstraps again."},
	{"cluster", "JoinToken", text(func(c *Config) *string { return &c.Cluster.JoinToken }), "Secret shared by every node of the cluster (udmgctl cluster token prints one): the cluster CA, node certificates, gossip key and secrets-sealing key derive from it. Comma-separated while rotating: the first is presented, all are trusted."},
	{"cluster", "GossipKey", text(func(c *Config) *string { return &c.Cluster.GossipKey }), "Gossip encryption key(s): base64 of 16, 24 or 32 bytes, comma-separated, the first used to send; empty: derived from JoinToken."},
	{"cluster", "TLSCert", text(func(c *Config) *string { return &c.Cluster.TLSCert }), "Operator node certificate file (PEM) instead of JoinToken, with TLSKey and TLSCA; names the node ID and GatewayName; client and server auth."},
	{"cluster", "TLSKey", text(func(c *Config) *string { return &c.Cluster.TLSKey }), "Private key file (PEM) of TLSCert."},
	{"cluster", "TLSCA", text(func(c *Config) *string { return &c.Cluster.TLSCA }), "CA bundle (PEM) that peers' node certificates are checked against."},

	{"vip", "Address", text(func(c *Config) *string { return &c.VIP.Address }), "Service address with its prefix (e.g. 192.168.56.100/24) that the ACTIVE node adds to Interface itself; empty: none."},
	{"vip", "Interface", text(func(c *Config) *string { return &c.VIP.Interface }), "Network interface the service address is added to (e.g. eth1); required with Address."},
	{"vip", "SourceAddress", boolean(func(c *Config) *bool { return &c.VIP.SourceAddress }), "true: connections to partners leave from the service address, so a partner's allow-list names one IP."},

	{"listeners", "Host", text(func(c *Config) *string { return &c.Listeners.Host }), "Interface on which the ACTIVE node opens the SFTP and FTP listeners."},
	{"listeners", "SFTPPort", port(func(c *Config) *int { return &c.Listeners.SFTPPort }), "Port of the SFTP server \"sftp\" a fresh cluster creates once (with an account for InitialUser); checked free at start-up."},
	{"listeners", "FTPPort", port(func(c *Config) *int { return &c.Listeners.FTPPort }), "Port of the FTP server \"ftp\" a fresh cluster creates once; checked free at start-up."},
	{"listeners", "PassivePorts", setPassivePorts, "FTP passive port range A-B of that server."},
	{"listeners", "PublicHost", text(func(c *Config) *string { return &c.Listeners.PublicHost }), "Address that server announces in FTP passive replies (behind a load balancer or NAT); empty: its local address."},
	{"listeners", "WriteAudit", text(func(c *Config) *string { return &c.Listeners.WriteAudit }), "File to which the node appends one JSON line per write, rename and delete on GatewayHome with its lease epoch (fault campaigns); empty: off; outside GatewayHome."},

	{"license", "File", text(func(c *Config) *string { return &c.License.File }), "Signed license file (JSON); empty: one-node evaluation."},

	{"log", "Level", text(func(c *Config) *string { return &c.Log.Level }), "debug, info, warn or error."},
	{"log", "Format", text(func(c *Config) *string { return &c.Log.Format }), "text or json (the -log-format flag overrides it)."},

	{"transfer", "CheckpointBytes", func(c *Config, v string) error {
		n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		if err != nil || n < -1 {
			return fmt.Errorf("%q is not a byte count (0 = default, -1 = no checkpoints)", v)
		}
		c.Transfer.CheckpointBytes = n
		return nil
	}, "Bytes a client transfer moves between two checkpoints committed through Raft; 0: the engine's default (16 MiB); -1: none (a transfer cut by failover starts again from zero)."},
}

func text(field func(*Config) *string) func(*Config, string) error {
	return func(c *Config, v string) error {
		*field(c) = v
		return nil
	}
}

func port(field func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not a port number (1-65535)", v)
		}
		*field(c) = n
		return nil
	}
}

func count(field func(*Config) *int) func(*Config, string) error {
	return func(c *Config, v string) error {
		n, err := strconv.Atoi(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not a whole number", v)
		}
		*field(c) = n
		return nil
	}
}

func duration(field func(*Config) *time.Duration) func(*Config, string) error {
	return func(c *Config, v string) error {
		d, err := time.ParseDuration(strings.TrimSpace(v))
		if err != nil {
			return fmt.Errorf("%q is not a duration (use e.g. 500ms, 2s)", v)
		}
		*field(c) = d
		return nil
	}
}

// setPassivePorts parses "A-B" into PassiveMin and PassiveMax; Validate checks the range.
func setPassivePorts(c *Config, v string) error {
	first, last, ok := strings.Cut(v, "-")
	lo, err1 := strconv.Atoi(strings.TrimSpace(first))
	hi, err2 := strconv.Atoi(strings.TrimSpace(last))
	if !ok || err1 != nil || err2 != nil {
		return fmt.Errorf("%q is not a port range (use e.g. 30000-30009)", v)
	}
	c.Listeners.PassivePorts = strings.TrimSpace(v)
	c.Listeners.PassiveMin, c.Listeners.PassiveMax = lo, hi
	return nil
}

// splitList reads a comma-separated list, trimming spaces and dropping empty entries.
func splitList(v string) []string {
	var out []string
	for _, part := range strings.Split(v, ",") {
		if part = strings.TrimSpace(part); part != "" {
			out = append(out, part)
		}
	}
	return out
}

func lookup(section, key string) (setting, bool) {
	for _, s := range settings {
		if s.section == section && s.key == key {
			return s, true
		}
	}
	return setting{}, false
}

func knownSection(name string) bool {
	for _, s := range sectionNames {
		if s == name {
			return true
		}
	}
	return false
}

func keysOf(section string) []string {
	var keys []string
	for _, s := range settings {
		if s.section == section {
			keys = append(keys, s.key)
		}
	}
	return keys
}

// sectionsWithKey lists the sections that have a key spelled exactly like key.
func sectionsWithKey(key string) []string {
	var out []string
	for _, s := range settings {
		if s.key == key {
			out = append(out, "["+s.section+"]")
		}
	}
	return out
}

// iniOptions: names are case-sensitive as documented; "; x" and "# x" are
// comments (inline only after a space, so "pa#ss" stays a value); only "="
// separates key and value; a trailing backslash is part of the value; a
// repeated key is kept so that it can be reported.
var iniOptions = ini.LoadOptions{
	SpaceBeforeInlineComment:  true,
	UnescapeValueDoubleQuotes: true,
	IgnoreContinuation:        true,
	AllowShadows:              true,
	KeyValueDelimiters:        "=",
}

// applyFile parses server.ini content and stores every key it sets.
func (c *Config) applyFile(path string, data []byte) error {
	f, err := ini.LoadSources(iniOptions, data)
	if err != nil {
		return syntaxError(path, data, err)
	}
	for _, sec := range f.Sections() {
		name := sec.Name()
		if name == ini.DefaultSection {
			if keys := sec.Keys(); len(keys) > 0 {
				msg := fmt.Sprintf("%s: %s: key outside any section", path, keys[0].Name())
				if in := sectionsWithKey(keys[0].Name()); len(in) > 0 {
					msg += " (put it under " + orList(in) + ")"
				}
				return errors.New(msg)
			}
			continue
		}
		if !knownSection(name) {
			msg := fmt.Sprintf("%s: [%s]: unknown section", path, name)
			if s := closest(name, sectionNames); s != "" {
				msg += fmt.Sprintf(" (did you mean [%s]?)", s)
			} else {
				msg += " (sections are [" + strings.Join(sectionNames, "], [") + "])"
			}
			return errors.New(msg)
		}
		for _, k := range sec.Keys() {
			s, ok := lookup(name, k.Name())
			if !ok {
				return unknownKey(path, name, k.Name())
			}
			values := k.ValueWithShadows()
			if len(values) > 1 {
				return fmt.Errorf("%s: [%s] %s: set more than once (keep one line)", path, name, s.key)
			}
			value := ""
			if len(values) == 1 {
				value = values[0]
			}
			if err := s.set(c, value); err != nil {
				return fmt.Errorf("%s: [%s] %s: %v", path, name, s.key, err)
			}
			c.origins[name+"."+s.key] = path
		}
	}
	return nil
}

func unknownKey(path, section, key string) error {
	msg := fmt.Sprintf("%s: [%s] %s: unknown key", path, section, key)
	if k := closest(key, keysOf(section)); k != "" {
		msg += fmt.Sprintf(" (did you mean %s?)", k)
	} else if in := sectionsWithKey(key); len(in) > 0 {
		msg += " (it belongs in " + orList(in) + ")"
	} else {
		msg += fmt.Sprintf(" (keys in [%s]: %s)", section, strings.Join(keysOf(section), ", "))
	}
	return errors.New(msg)
}

// syntaxError makes an ini parse error one line with a line number when it can find one.
func syntaxError(path string, data []byte, err error) error {
	var delim ini.ErrDelimiterNotFound
	var empty ini.ErrEmptyKeyName
	switch {
	case errors.As(err, &delim):
		text := strings.TrimSpace(delim.Line)
		return fmt.Errorf("%s: %s: %q is not \"Key = value\", a [section] or a comment", path, lineOf(data, text), text)
	case errors.As(err, &empty):
		text := strings.TrimSpace(empty.Line)
		return fmt.Errorf("%s: %s: %q has no key name before \"=\"", path, lineOf(data, text), text)
	case strings.HasPrefix(err.Error(), "unclosed section: "):
		text := strings.TrimSpace(strings.TrimPrefix(err.Error(), "unclosed section: "))
		return fmt.Errorf("%s: %s: %q is missing its closing \"]\"", path, lineOf(data, text), text)
	}
	return fmt.Errorf("%s: %s", path, strings.Join(strings.Fields(err.Error()), " "))
}

// lineOf finds "line N" of the first line whose trimmed text is text.
func lineOf(data []byte, text string) string {
	for i, line := range strings.Split(string(data), "\n") {
		if strings.TrimSpace(line) == text {
			return fmt.Sprintf("line %d", i+1)
		}
	}
	return "syntax error"
}

// applyEnv applies UDMG_<SECTION>_<KEY>=value overrides; an UDMG_ variable
// that names no setting is an error, so typos are never silently ignored.
func (c *Config) applyEnv(env []string) error {
	vars := map[string]string{}
	for _, kv := range env {
		name, value, ok := strings.Cut(kv, "=")
		if ok && strings.HasPrefix(name, envPrefix) {
			vars[name] = value
		}
	}
	names := make([]string, 0, len(vars))
	for name := range vars {
		names = append(names, name)
	}
	sort.Strings(names)

	for _, name := range names {
		s, ok := envSetting(name)
		if !ok {
			return unknownEnv(name)
		}
		if err := s.set(c, vars[name]); err != nil {
			return fmt.Errorf("%s: %v", name, err)
		}
		c.origins[s.section+"."+s.key] = name
	}
	return nil
}

// envName is the environment variable that overrides section/key.
func envName(section, key string) string {
	return envPrefix + strings.ToUpper(section) + "_" + strings.ToUpper(key)
}

func envSetting(name string) (setting, bool) {
	for _, s := range settings {
		if strings.EqualFold(envName(s.section, s.key), name) {
			return s, true
		}
	}
	return setting{}, false
}

func unknownEnv(name string) error {
	all := make([]string, len(settings))
	for i, s := range settings {
		all[i] = envName(s.section, s.key)
	}
	if s := closest(name, all); s != "" {
		return fmt.Errorf("%s: no such setting (did you mean %s?)", name, s)
	}
	section, _, _ := strings.Cut(strings.TrimPrefix(name, envPrefix), "_")
	for _, known := range sectionNames {
		if strings.EqualFold(section, known) {
			keys := keysOf(known)
			for i, k := range keys {
				keys[i] = strings.ToUpper(k)
			}
			return fmt.Errorf("%s: no such setting (keys in [%s]: %s)", name, known, strings.Join(keys, ", "))
		}
	}
	return fmt.Errorf("%s: no such setting (overrides are %s<SECTION>_<KEY>, e.g. UDMG_ADMIN_PORT)", name, envPrefix)
}

// closest returns the candidate nearest to name when it is near enough to be a typo, else "".
func closest(name string, candidates []string) string {
	limit := min(max(len(name)/3, 1), 3)
	best, bestDist := "", limit+1
	for _, cand := range candidates {
		if strings.EqualFold(cand, name) {
			return cand
		}
		if d := editDistance(strings.ToLower(name), strings.ToLower(cand)); d < bestDist {
			best, bestDist = cand, d
		}
	}
	return best
}

// editDistance is the Levenshtein distance between a and b (bytes; names are ASCII).
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// orList writes "a", "a or b", "a, b or c".
func orList(items []string) string {
	if len(items) <= 1 {
		return strings.Join(items, "")
	}
	return strings.Join(items[:len(items)-1], ", ") + " or " + items[len(items)-1]
}
