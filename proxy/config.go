package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"
)

// Config is a parsed and validated server.toml.
type Config struct {
	File     string
	Proxy    Settings
	Services []Service // sorted by name
}

// Settings is the [proxy] table.
type Settings struct {
	// Recover answers 500 instead of dropping the connection when handling
	// a request panics.
	Recover bool
	// CORS lets browser pages from other origins call the services.
	CORS bool
	// Tracker gives every request an X-Request-Id (kept when the client
	// sends one) that the targets and the access log see.
	Tracker bool
	// Logger writes one access-log line per request.
	Logger bool
	Port   int
	Inet   string
}

// Service is one [service.NAME] table: the proxy forwards /service/NAME/...
// to its targets.
type Service struct {
	Name     string
	Protocol string   // http or https, to the targets
	Policy   string   // failover: the targets in order, the next when one fails
	Admins   []string // when set, the only users whose HTTP Basic logins pass
	Targets  []Target
}

// Target is one [[service.NAME.targets]] entry.
type Target struct {
	Hostname string
	Port     int
}

// Addr is the target's host:port.
func (t Target) Addr() string { return joinHostPort(t.Hostname, t.Port) }

func joinHostPort(host string, port int) string {
	if strings.Contains(host, ":") {
		host = "[" + host + "]"
	}
	return host + ":" + strconv.Itoa(port)
}

// file is server.toml as written; keys follow the seed's documentation.
type file struct {
	Proxy struct {
		Recover *bool  `toml:"recover"`
		CORS    *bool  `toml:"cors"`
		Tracker *bool  `toml:"tracker"`
		Logger  *bool  `toml:"logger"`
		Port    any    `toml:"port"` // the seed writes "5000"; 5000 is accepted too
		Inet    string `toml:"inet"`
	} `toml:"proxy"`
	Service map[string]struct {
		Protocol string   `toml:"protocol"`
		Policy   string   `toml:"policy"`
		Admins   []string `toml:"admins"`
		Targets  []struct {
			Hostname string `toml:"hostname"`
			Port     any    `toml:"port"`
		} `toml:"targets"`
	} `toml:"service"`
}

// Defaults of keys left out; the seed's example sets them all.
const (
	DefaultPort = 5000
	DefaultInet = "127.0.0.1"
)

// knownKeys lists the keys of each kind of table, for error messages.
var knownKeys = map[string]string{
	"":        "proxy, service",
	"proxy":   "recover, cors, tracker, logger, port, inet",
	"service": "protocol, policy, admins, targets",
	"targets": "hostname, port",
}

// Load reads and validates path. Every error is one line that names the
// file, the line when known, and the key.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse is Load on data already read; path is used in messages.
func Parse(path string, data []byte) (*Config, error) {
	doc := document{path: path, lines: strings.Split(string(data), "\n")}
	var f file
	dec := toml.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&f); err != nil {
		return nil, doc.decodeError(err)
	}
	c := &Config{File: path, Proxy: Settings{Recover: true, Logger: true, Inet: or(f.Proxy.Inet, DefaultInet)}}
	for _, s := range []struct {
		v   *bool
		dst *bool
	}{{f.Proxy.Recover, &c.Proxy.Recover}, {f.Proxy.CORS, &c.Proxy.CORS}, {f.Proxy.Tracker, &c.Proxy.Tracker}, {f.Proxy.Logger, &c.Proxy.Logger}} {
		if s.v != nil {
			*s.dst = *s.v
		}
	}
	c.Proxy.Port = DefaultPort
	if f.Proxy.Port != nil {
		p, err := port(f.Proxy.Port)
		if err != nil {
			return nil, doc.keyError("proxy", 0, "port", "%v", err)
		}
		c.Proxy.Port = p
	}
	if len(f.Service) == 0 {
		return nil, fmt.Errorf("%s: no [service.NAME] table: the proxy has nothing to forward", path)
	}
	names := make([]string, 0, len(f.Service))
	for name := range f.Service {
		names = append(names, name)
	}
	slices.Sort(names)
	for _, name := range names {
		raw := f.Service[name]
		table := "service." + name
		if !validName(name) {
			return nil, doc.keyError(table, 0, "", "service name %q: use letters, digits, '-', '_' and '.'", name)
		}
		s := Service{Name: name, Protocol: or(raw.Protocol, "http"), Policy: or(raw.Policy, "failover"), Admins: raw.Admins}
		if s.Protocol != "http" && s.Protocol != "https" {
			return nil, doc.keyError(table, 0, "protocol", "%q is not a protocol (use http or https)", s.Protocol)
		}
		if s.Policy != "failover" {
			return nil, doc.keyError(table, 0, "policy", "%q is not a policy (use failover)", s.Policy)
		}
		for _, a := range s.Admins {
			if strings.TrimSpace(a) == "" {
				return nil, doc.keyError(table, 0, "admins", "empty user name")
			}
		}
		if len(raw.Targets) == 0 {
			return nil, doc.keyError(table, 0, "", "no [[%s.targets]]: give at least one hostname and port", table)
		}
		for i, t := range raw.Targets {
			if strings.TrimSpace(t.Hostname) == "" {
				return nil, doc.keyError(table+".targets", i, "hostname", "missing (target %d)", i+1)
			}
			p, err := port(t.Port)
			if err != nil {
				return nil, doc.keyError(table+".targets", i, "port", "%v (target %d)", err, i+1)
			}
			s.Targets = append(s.Targets, Target{Hostname: t.Hostname, Port: p})
		}
		c.Services = append(c.Services, s)
	}
	return c, nil
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

var nameRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)

func validName(s string) bool { return nameRE.MatchString(s) }

// port accepts a TOML integer or a string of digits, as the seed writes
// [proxy] port = "5000" but targets' port = 8080.
func port(v any) (int, error) {
	var n int64
	switch p := v.(type) {
	case nil:
		return 0, errors.New("missing")
	case int64:
		n = p
	case string:
		var err error
		if n, err = strconv.ParseInt(strings.TrimSpace(p), 10, 32); err != nil {
			return 0, fmt.Errorf("%q is not a port number", p)
		}
	default:
		return 0, fmt.Errorf("want a port number, got %v", v)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%d is not a port number (1-65535)", n)
	}
	return int(n), nil
}

// document finds where keys are in the file, for messages.
type document struct {
	path  string
	lines []string
}

// header returns the table named by a "[x]" or "[[x]]" line, without
// spaces and quotes ("service.mft.targets").
func header(line string) (name string, array, ok bool) {
	l := strings.TrimSpace(line)
	if !strings.HasPrefix(l, "[") {
		return "", false, false
	}
	if i := strings.Index(l, "#"); i >= 0 {
		l = strings.TrimSpace(l[:i])
	}
	array = strings.HasPrefix(l, "[[")
	l = strings.Trim(l, "[]")
	l = strings.NewReplacer(" ", "", "\t", "", `"`, "", "'", "").Replace(l)
	return l, array, true
}

// keyOf returns the key set on line ("" if none).
func keyOf(line string) string {
	k, _, ok := strings.Cut(line, "=")
	if !ok {
		return ""
	}
	return strings.Trim(strings.TrimSpace(k), `"'`)
}

// line is the text of a 1-based line ("" when out of range).
func (d document) line(n int) string {
	if n < 1 || n > len(d.lines) {
		return ""
	}
	return d.lines[n-1]
}

// tableAt is the table a 1-based line belongs to.
func (d document) tableAt(line int) string {
	for i := min(line, len(d.lines)) - 1; i >= 0; i-- {
		if name, _, ok := header(d.lines[i]); ok {
			return name
		}
	}
	return ""
}

// find returns the 1-based line where key is set in the nth (0-based)
// occurrence of table, or of the table's header when key is ""; 0 when
// not found.
func (d document) find(table string, nth int, key string) int {
	seen := -1
	in := false
	for i, line := range d.lines {
		if name, _, ok := header(line); ok {
			in = name == table
			if in {
				seen++
				if key == "" && seen == nth {
					return i + 1
				}
			}
			continue
		}
		if in && seen == nth && key != "" && keyOf(line) == key {
			return i + 1
		}
	}
	return 0
}

// keyError is a validation error at table/key.
func (d document) keyError(table string, nth int, key, format string, args ...any) error {
	where := d.path
	line := d.find(table, nth, key)
	if line == 0 { // a missing key: point at its table
		line = d.find(table, nth, "")
	}
	if line > 0 {
		where += ":" + strconv.Itoa(line)
	}
	name := "[" + table + "]"
	if strings.HasSuffix(table, ".targets") {
		name = "[[" + table + "]]"
	}
	if key != "" {
		name += " " + key
	}
	return fmt.Errorf("%s: %s: %s", where, name, fmt.Sprintf(format, args...))
}

// goTypeNames says in TOML words what a field of server.toml holds.
var goTypeNames = map[string]string{
	"bool":     "true or false",
	"string":   "a string",
	"[]string": `a list of strings (["a", "b"])`,
	"int":      "a number",
}

func typeName(goType string) string {
	if n, ok := goTypeNames[strings.TrimPrefix(goType, "*")]; ok {
		return n
	}
	if strings.HasPrefix(goType, "[]") {
		return "a list of tables"
	}
	return "a table"
}

var typeRE = regexp.MustCompile(`cannot decode TOML (\w+) into .* of type (\S+)$`)

// decodeError turns go-toml's errors into one line with file, line and key.
func (d document) decodeError(err error) error {
	var strict *toml.StrictMissingError
	if errors.As(err, &strict) && len(strict.Errors) > 0 {
		e := strict.Errors[0]
		row, _ := e.Position()
		key := e.Key()
		table := strings.Join(key[:len(key)-1], ".")
		kind := ""
		switch {
		case len(key) == 1:
		case key[0] == "proxy":
			kind = "proxy"
		case key[0] == "service" && len(key) == 3:
			kind = "service"
		case key[0] == "service" && len(key) == 4 && key[2] == "targets":
			kind = "targets"
		}
		known, ok := knownKeys[kind]
		hint := ""
		if ok && (kind != "" || len(key) == 1) {
			hint = " (known keys: " + known + ")"
		}
		name, what := key[len(key)-1], "key"
		if _, _, isTable := header(d.line(row)); isTable {
			what = "table"
		}
		switch {
		case what == "table":
			name = "[" + strings.Join(key, ".") + "]"
		case kind == "targets":
			name = "[[" + table + "]] " + name
		case table != "":
			name = "[" + table + "] " + name
		}
		return fmt.Errorf("%s:%d: %s: unknown %s%s", d.path, row, name, what, hint)
	}
	var de *toml.DecodeError
	if errors.As(err, &de) {
		row, col := de.Position()
		msg := strings.TrimPrefix(de.Error(), "toml: ")
		if m := typeRE.FindStringSubmatch(msg); m != nil && d.line(row) != "" {
			name := keyOf(d.line(row))
			if t := d.tableAt(row); t != "" {
				name = "[" + t + "] " + name
			}
			return fmt.Errorf("%s:%d: %s: want %s, got a TOML %s", d.path, row, name, typeName(m[2]), m[1])
		}
		return fmt.Errorf("%s:%d:%d: TOML syntax: %s", d.path, row, col, msg)
	}
	return fmt.Errorf("%s: %v", d.path, err)
}
