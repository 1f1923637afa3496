package config

import (
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"github.com/udmg/gateway/authguard"
	"github.com/udmg/gateway/confine"
)

// Validate checks cross-field rules; Load calls it.
//
// It checks every value as well (ports, sets of allowed words, durations),
// so a Config built in code gets the same checks as one read from a file.
// It returns the first problem found, as one line naming the file or
// environment variable it came from, the section and the key.
func (c *Config) Validate() error {
	for _, check := range []func() error{
		c.checkGlobal,
		c.checkPaths,
		c.checkAdmin,
		c.checkDatabase,
		c.checkController,
		c.checkCluster,
		c.checkVIP,
		c.checkListeners,
		c.checkLog,
		c.checkPortClashes,
	} {
		if err := check(); err != nil {
			return err
		}
	}
	return nil
}

func (c *Config) checkGlobal() error {
	name := c.Global.GatewayName
	switch {
	case name == "":
		return c.keyError("global", "GatewayName", "must not be empty")
	case strings.ContainsFunc(name, unicode.IsSpace) || strings.Contains(name, "/"):
		return c.keyError("global", "GatewayName", "%q must not contain whitespace or '/' (it is part of node IDs)", name)
	}
	return nil
}

func (c *Config) checkPaths() error {
	if c.Paths.GatewayHome == "" {
		return c.keyError("paths", "GatewayHome", "must not be empty")
	}
	return nil
}

func (c *Config) checkAdmin() error {
	a := c.Admin
	if err := c.checkPort("admin", "Port", a.Port); err != nil {
		return err
	}
	if err := c.checkTLSPair("admin", a.TLSCert, a.TLSKey); err != nil {
		return err
	}
	if a.InitialUser == "" {
		return c.keyError("admin", "InitialUser", "must not be empty")
	}
	if n := len(a.InitialPassword); n > authguard.MaxPasswordBytes {
		return c.keyError("admin", "InitialPassword", "too long: %d bytes, at most %d (bcrypt ignores the rest)", n, authguard.MaxPasswordBytes)
	}
	return nil
}

func (c *Config) checkDatabase() error {
	d := c.Database
	switch d.Type {
	case "sqlite":
	case "postgresql":
		for _, f := range []struct{ key, value string }{
			{"Address", d.Address}, {"Name", d.Name}, {"User", d.User},
		} {
			if f.value == "" {
				return c.keyError("database", f.key, "must not be empty when Type is postgresql")
			}
		}
	default:
		return c.keyError("database", "Type", "%q is not a database type (use sqlite or postgresql)", d.Type)
	}
	if err := c.checkTLSPair("database", d.TLSCert, d.TLSKey); err != nil {
		return err
	}
	if d.AESPassphrase != "" {
		inside, err := confine.Within(c.Paths.GatewayHome, d.AESPassphrase)
		if err != nil {
			return c.keyError("database", "AESPassphrase", "%v", err)
		}
		if inside {
			return c.keyError("database", "AESPassphrase", "%s lies inside [paths] GatewayHome %s, where rules and accounts read and write: move the key file out of it", d.AESPassphrase, c.Paths.GatewayHome)
		}
	}
	return nil
}

func (c *Config) checkController() error {
	t := c.Controller
	for _, f := range []struct {
		key   string
		value fmt.Stringer
		ok    bool
	}{
		{"Heartbeat", t.Heartbeat, t.Heartbeat > 0},
		{"Deadline", t.Deadline, t.Deadline > 0},
		{"HeartbeatCheck", t.HeartbeatCheck, t.HeartbeatCheck > 0},
	} {
		if !f.ok {
			return c.keyError("controller", f.key, "must be greater than 0 (got %v)", f.value)
		}
	}
	if t.Deadline < 3*t.Heartbeat {
		return c.crossError(fmt.Sprintf("[controller] Deadline (%v) must be at least 3 × Heartbeat (%v)", t.Deadline, t.Heartbeat),
			"controller.Deadline", "controller.Heartbeat")
	}
	if t.HeartbeatCheck > t.Deadline {
		return c.crossError(fmt.Sprintf("[controller] HeartbeatCheck (%v) must not be longer than Deadline (%v)", t.HeartbeatCheck, t.Deadline),
			"controller.HeartbeatCheck", "controller.Deadline")
	}
	return nil
}

func (c *Config) checkCluster() error {
	k := c.Cluster
	if k.DataDir == "" {
		return c.keyError("cluster", "DataDir", "must not be empty")
	}
	if err := c.checkAddress("cluster", "RaftAddress", k.RaftAddress, ":8300"); err != nil {
		return err
	}
	if err := c.checkAddress("cluster", "GossipAddress", k.GossipAddress, ":7946"); err != nil {
		return err
	}
	for _, peer := range k.Join {
		if peer == "" || strings.ContainsFunc(peer, unicode.IsSpace) {
			return c.keyError("cluster", "Join", "%q is not an address (use a comma-separated list, e.g. node2:7946,node3:7946)", peer)
		}
	}
	if k.BootstrapExpect < 1 {
		return c.keyError("cluster", "BootstrapExpect", "%d must be at least 1", k.BootstrapExpect)
	}
	// Node TLS is mutual: each node needs its certificate, its key and the CA
	// it checks the others against.
	tls := []struct{ key, value string }{{"TLSCert", k.TLSCert}, {"TLSKey", k.TLSKey}, {"TLSCA", k.TLSCA}}
	set := ""
	for _, f := range tls {
		if f.value != "" {
			set = f.key
			break
		}
	}
	if set != "" {
		for _, f := range tls {
			if f.value == "" {
				return c.keyError("cluster", f.key, "must be set when %s is set (node TLS needs TLSCert, TLSKey and TLSCA)", set)
			}
		}
	}
	// Only members change the cluster: a node that forms or joins a
	// multi-node cluster needs an identity its peers can check.
	if (len(k.Join) > 0 || k.BootstrapExpect > 1) && set == "" && strings.Trim(k.JoinToken, " ,") == "" {
		what := "joins [cluster] Join"
		if len(k.Join) == 0 {
			what = fmt.Sprintf("forms a cluster of [cluster] BootstrapExpect = %d", k.BootstrapExpect)
		}
		return c.crossError("this node "+what+" but has no node identity: set [cluster] JoinToken (udmgctl cluster token prints one) or [cluster] TLSCert/TLSKey/TLSCA",
			"cluster.Join", "cluster.BootstrapExpect")
	}
	return nil
}

func (c *Config) checkListeners() error {
	l := c.Listeners
	if err := c.checkPort("listeners", "SFTPPort", l.SFTPPort); err != nil {
		return err
	}
	if err := c.checkPort("listeners", "FTPPort", l.FTPPort); err != nil {
		return err
	}
	for _, p := range []int{l.PassiveMin, l.PassiveMax} {
		if !validPort(p) {
			return c.keyError("listeners", "PassivePorts", "%d-%d: %d is not a port number (1-65535)", l.PassiveMin, l.PassiveMax, p)
		}
	}
	if l.PassiveMin > l.PassiveMax {
		return c.keyError("listeners", "PassivePorts", "%d-%d ends before it starts (write the lower port first)", l.PassiveMin, l.PassiveMax)
	}
	return c.checkWriteAudit()
}

// checkWriteAudit: the audit file's directory exists, the file is not a
// directory, and it is not among the users' files (a client could read or
// remove it, and its own writes would be audited).
func (c *Config) checkWriteAudit() error {
	p := c.Listeners.WriteAudit
	if p == "" {
		return nil
	}
	abs, err1 := filepath.Abs(p)
	home, err2 := filepath.Abs(c.Paths.GatewayHome)
	if err1 == nil && err2 == nil {
		if rel, err := filepath.Rel(home, abs); err == nil && filepath.IsLocal(rel) {
			return c.keyError("listeners", "WriteAudit", "%s is inside GatewayHome %s (put it outside the users' files)", p, home)
		}
	}
	if fi, err := os.Stat(p); err == nil && fi.IsDir() {
		return c.keyError("listeners", "WriteAudit", "%s is a directory (give a file to append to)", p)
	}
	if fi, err := os.Stat(filepath.Dir(p)); err != nil || !fi.IsDir() {
		return c.keyError("listeners", "WriteAudit", "%s: directory %s does not exist", p, filepath.Dir(p))
	}
	return nil
}

func (c *Config) checkLog() error {
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		return c.keyError("log", "Level", "%q is not a log level (use debug, info, warn or error)", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		return c.keyError("log", "Format", "%q is not a log format (use text or json)", c.Log.Format)
	}
	return nil
}

// binding is a port (or port range) this node listens on.
type binding struct {
	section, key string
	host         string
	lo, hi       int
}

func (b binding) String() string {
	if b.lo == b.hi {
		return fmt.Sprintf("[%s] %s (%d)", b.section, b.key, b.lo)
	}
	return fmt.Sprintf("[%s] %s (%d-%d)", b.section, b.key, b.lo, b.hi)
}

// checkPortClashes refuses two listeners on one port of overlapping
// addresses: the second would fail to bind only once the node is running
// (or, for the MFT listeners, only once it becomes ACTIVE).
func (c *Config) checkPortClashes() error {
	l := c.Listeners
	bs := []binding{
		{"admin", "Port", c.Admin.Host, c.Admin.Port, c.Admin.Port},
		{"listeners", "SFTPPort", l.Host, l.SFTPPort, l.SFTPPort},
		{"listeners", "FTPPort", l.Host, l.FTPPort, l.FTPPort},
		{"listeners", "PassivePorts", l.Host, l.PassiveMin, l.PassiveMax},
	}
	for _, a := range []struct{ key, addr string }{
		{"RaftAddress", c.Cluster.RaftAddress}, {"GossipAddress", c.Cluster.GossipAddress},
	} {
		if host, p, err := splitAddress(a.addr); err == nil {
			bs = append(bs, binding{"cluster", a.key, host, p, p})
		}
	}
	for i, a := range bs {
		for _, b := range bs[i+1:] {
			if a.lo <= b.hi && b.lo <= a.hi && hostsOverlap(a.host, b.host) {
				return c.crossError(fmt.Sprintf("%v and %v both use port %d", a, b, max(a.lo, b.lo)),
					a.section+"."+a.key, b.section+"."+b.key)
			}
		}
	}
	return nil
}

func hostsOverlap(a, b string) bool {
	wildcard := func(h string) bool { return h == "" || h == "0.0.0.0" || h == "::" }
	return wildcard(a) || wildcard(b) || strings.EqualFold(a, b)
}

func validPort(p int) bool { return p >= 1 && p <= 65535 }

func (c *Config) checkPort(section, key string, p int) error {
	if !validPort(p) {
		return c.keyError(section, key, "%d is not a port number (1-65535)", p)
	}
	return nil
}

func (c *Config) checkTLSPair(section, cert, key string) error {
	switch {
	case cert != "" && key == "":
		return c.keyError(section, "TLSKey", "must be set when TLSCert is set")
	case cert == "" && key != "":
		return c.keyError(section, "TLSCert", "must be set when TLSKey is set")
	}
	return nil
}

func (c *Config) checkAddress(section, key, addr, example string) error {
	_, p, err := splitAddress(addr)
	if err != nil {
		return c.keyError(section, key, "%q is not host:port (use e.g. %s or 10.0.0.5%s)", addr, example, example)
	}
	if !validPort(p) {
		return c.keyError(section, key, "%q: %d is not a port number (1-65535)", addr, p)
	}
	return nil
}

// splitAddress splits "host:port" with a numeric port.
func splitAddress(addr string) (string, int, error) {
	host, portText, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	p, err := strconv.Atoi(portText)
	if err != nil {
		return "", 0, err
	}
	return host, p, nil
}

// keyError reports a problem with one key, located where that key was set:
// "UDMG_ADMIN_PORT: problem" for an environment override, otherwise
// "file: [section] Key: problem" (without "file: " when there is no file).
func (c *Config) keyError(section, key, format string, args ...any) error {
	msg := fmt.Sprintf(format, args...)
	if src := c.origins[section+"."+key]; src != "" && src != c.File {
		return fmt.Errorf("%s: %s", src, msg)
	}
	msg = fmt.Sprintf("[%s] %s: %s", section, key, msg)
	if c.File != "" {
		msg = c.File + ": " + msg
	}
	return errors.New(msg)
}

// crossError reports a rule between keys ("section.Key" each), prefixed by
// every place those keys were set, or by the file when none was.
func (c *Config) crossError(msg string, keys ...string) error {
	var sources []string
	for _, k := range keys {
		if src := c.origins[k]; src != "" && !slices.Contains(sources, src) {
			sources = append(sources, src)
		}
	}
	if len(sources) == 0 && c.File != "" {
		sources = []string{c.File}
	}
	if len(sources) == 0 {
		return errors.New(msg)
	}
	return fmt.Errorf("%s: %s", strings.Join(sources, ", "), msg)
}
