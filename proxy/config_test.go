package proxy

import (
	"reflect"
	"strings"
	"testing"
)

// seedTOML is the seed's example with a real hostname.
const seedTOML = `# Proxy Configuration
[proxy]
recover = true
cors = true
tracker = true
logger = true
port = "5000"
inet = "127.0.0.1"

[service.mft]
protocol = "http"
policy = "failover"
admins = ["admin"]

[[service.mft.targets]]
hostname = "gateway_1"
port = 8080
`

// seedServices is the seed's second form: a [service] table, indented
// services without policy, two targets tried one after the other.
const seedServices = `[service]
  [service.Service-A]
    protocol = "http"

    [[service.Service-A.targets]]
      hostname = "Server-A"
      port = 8080
    [[service.Service-A.targets]]
      hostname = "Server-B"
      port = 8080

  [service.Service-B]
    protocol = "http"
    [[service.Service-B.targets]]
      hostname = "Server-B"
      port = 8080
`

func TestParseSeedConfigs(t *testing.T) {
	c, err := Parse("server.toml", []byte(seedTOML))
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{File: "server.toml",
		Proxy: Settings{Recover: true, CORS: true, Tracker: true, Logger: true, Port: 5000, Inet: "127.0.0.1"},
		Services: []Service{{Name: "mft", Protocol: "http", Policy: "failover", Admins: []string{"admin"},
			Targets: []Target{{Hostname: "gateway_1", Port: 8080}}}}}
	if !reflect.DeepEqual(c, want) {
		t.Fatalf("got %+v\nwant %+v", c, want)
	}

	c, err = Parse("server.toml", []byte(seedServices))
	if err != nil {
		t.Fatal(err)
	}
	if len(c.Services) != 2 || c.Services[0].Name != "Service-A" || c.Services[0].Policy != "failover" ||
		!reflect.DeepEqual(c.Services[0].Targets, []Target{{"Server-A", 8080}, {"Server-B", 8080}}) {
		t.Fatalf("services %+v", c.Services)
	}
	if c.Proxy.Port != DefaultPort || c.Proxy.Inet != DefaultInet || !c.Proxy.Recover || c.Proxy.CORS {
		t.Fatalf("defaults %+v", c.Proxy)
	}
}

// TestParseErrors: every mistake stops start-up with one line naming the
// file, the line and the key.
func TestParseErrors(t *testing.T) {
	cases := []struct {
		name, from, to, want string
	}{
		{"unknown proxy key", `logger = true`, "logger = true\nbogus = 1",
			`server.toml:7: [proxy] bogus: unknown key (known keys: recover, cors, tracker, logger, port, inet)`},
		{"unknown service key", `policy = "failover"`, "policy = \"failover\"\nprotocl = \"http\"",
			`server.toml:13: [service.mft] protocl: unknown key (known keys: protocol, policy, admins, targets)`},
		{"unknown target key", `port = 8080`, "port = 8080\nweight = 2",
			`server.toml:18: [[service.mft.targets]] weight: unknown key (known keys: hostname, port)`},
		{"unknown table", `# Proxy Configuration`, "[extra]\nx = 1",
			`server.toml:1: [extra]: unknown table (known keys: proxy, service)`},
		{"syntax", `[proxy]`, `[proxy`, `server.toml:2:7: TOML syntax: expected character ]`},
		{"wrong type", `cors = true`, `cors = "yes"`, `server.toml:4: [proxy] cors: want true or false, got a TOML string`},
		{"admins not a list", `admins = ["admin"]`, `admins = "admin"`, `server.toml:13: [service.mft] admins: want a list of strings`},
		{"policy", `policy = "failover"`, `policy = "round-robin"`, `server.toml:12: [service.mft] policy: "round-robin" is not a policy (use failover)`},
		{"protocol", `protocol = "http"`, `protocol = "ftp"`, `server.toml:11: [service.mft] protocol: "ftp" is not a protocol (use http or https)`},
		{"proxy port", `port = "5000"`, `port = "http"`, `server.toml:7: [proxy] port: "http" is not a port number`},
		{"target port", `port = 8080`, `port = 80800`, `server.toml:17: [[service.mft.targets]] port: 80800 is not a port number (1-65535) (target 1)`},
		{"missing hostname", `hostname = "gateway_1"`, ``, `server.toml:15: [[service.mft.targets]] hostname: missing (target 1)`},
		{"no targets", "[[service.mft.targets]]\nhostname = \"gateway_1\"\nport = 8080\n", ``, `server.toml:10: [service.mft]: no [[service.mft.targets]]`},
		{"no service", "[service.mft]", "[other]", `server.toml:10: [other]: unknown table`},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			text := strings.Replace(seedTOML, tc.from, tc.to, 1)
			if text == seedTOML {
				t.Fatalf("case does not change the file")
			}
			_, err := Parse("server.toml", []byte(text))
			if err == nil {
				t.Fatalf("accepted:\n%s", text)
			}
			if !strings.HasPrefix(err.Error(), tc.want) || strings.Contains(err.Error(), "\n") {
				t.Fatalf("error %q\nwant one line starting %q", err, tc.want)
			}
		})
	}
	if _, err := Parse("server.toml", []byte("[proxy]\nport = 5000\n")); err == nil || !strings.Contains(err.Error(), "no [service.NAME] table") {
		t.Fatalf("no services: %v", err)
	}
}
