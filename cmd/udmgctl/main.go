// Command udmgctl administers a gateway cluster over its REST API (nodes,
// users, tokens, the license), and signs license files for the vendor.
//
//	udmgctl [--addr URL] [--user NAME] [--password PW] [--json] COMMAND ...
//
// The address and credentials also come from UDMGCTL_ADDR, UDMGCTL_USER,
// UDMGCTL_PASSWORD and UDMGCTL_TOKEN (not UDMG_*, which the server reserves
// for its own settings). Any node accepts any command: writes sent to a node
// that does not lead are carried out by the leader.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

const usage = `udmgctl administers a UDMG gateway cluster over its REST API.

Usage: udmgctl [global flags] COMMAND [flags] [args]

Commands:
  nodes list                         the cluster's nodes and their modes
  nodes remove ID                    remove a node from the cluster (Raft voters and node table)
  cluster status                     who is ACTIVE, the lease epoch, time until the lease expires
  cluster token                      print a fresh random [cluster] JoinToken (offline)
  users list                         users and their permissions
  users add NAME --password PW [--perms transfers=rw-,users=r--]
                                     (here --password is the new user's; give yours
                                     before the command or in UDMGCTL_PASSWORD)
  users delete NAME
` + mftUsage + `  token create                       print a bearer token (use it with --token)
  token revoke --token T             revoke a bearer token
  license show [--file F [--pubkey P]]
                                     the cluster's license, or a license file checked locally
  license install FILE               install a license file in the cluster
  secrets rotate                     a new secrets key; every sealed password and key resealed
  license keygen --out DIR           make a vendor key pair (vendor.key, vendor.pub)
  license sign --key vendor.key --licensee NAME --nodes N --expires 2027-12-31 [--out F]

Global flags (also accepted after the command):
  --addr URL         API address (env UDMGCTL_ADDR, default http://127.0.0.1:8080)
  --user NAME        user name (env UDMGCTL_USER, default admin)
  --password PW      password (env UDMGCTL_PASSWORD)
  --token T          bearer token instead of a password (env UDMGCTL_TOKEN)
  --json             print the API's JSON instead of tables

Permissions are written like file modes per domain (administration, servers,
partners, rules, users, transfers): r read, w write, d delete, - none.
`

// cli holds the global flags and where output goes.
type cli struct {
	addr, user, password, token string
	json                        bool
	stdout, stderr              io.Writer
}

// run is udmgctl with its environment passed in, so tests can call it; it
// returns the exit code.
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr}
	err := c.main(args, getenv)
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		fmt.Fprint(stdout, usage)
		return 0
	}
	fmt.Fprintln(stderr, "udmgctl: "+oneLine(err.Error()))
	return 1
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// globalFlags registers the global flags on fs too, so that they may follow
// the command; except names flags the command uses for itself.
func (c *cli) globalFlags(fs *flag.FlagSet, except ...string) {
	for _, f := range []struct {
		name string
		v    *string
	}{{"addr", &c.addr}, {"user", &c.user}, {"password", &c.password}, {"token", &c.token}} {
		if !slices.Contains(except, f.name) {
			fs.StringVar(f.v, f.name, *f.v, "")
		}
	}
	fs.BoolVar(&c.json, "json", c.json, "print JSON")
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, on one line
	fs.Usage = func() {}
	return fs
}

// parse reads flags wherever they appear among the positional arguments
// ("users add alice --password x" as well as "users add --password x alice").
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, fmt.Errorf("%s: %w", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

func (c *cli) main(args []string, getenv func(string) string) error {
	c.addr = or(getenv("UDMGCTL_ADDR"), "http://127.0.0.1:8080")
	c.user = or(getenv("UDMGCTL_USER"), "admin")
	c.password = getenv("UDMGCTL_PASSWORD")
	c.token = getenv("UDMGCTL_TOKEN")

	fs := newFlagSet("udmgctl")
	c.globalFlags(fs)
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return fmt.Errorf("%w (see udmgctl help)", err)
	}
	rest := fs.Args()
	if len(rest) == 0 || rest[0] == "help" {
		return flag.ErrHelp
	}
	group, sub := rest[0], ""
	if len(rest) > 1 {
		sub = rest[1]
	}
	type command func(args []string) error
	commands := map[string]map[string]command{
		"nodes":   {"list": c.nodesList, "remove": c.nodesRemove},
		"users":   {"list": c.usersList, "add": c.usersAdd, "delete": c.usersDelete},
		"token":   {"create": c.tokenCreate, "revoke": c.tokenRevoke},
		"license": {"show": c.licenseShow, "install": c.licenseInstall, "keygen": c.licenseKeygen, "sign": c.licenseSign},
		"cluster": {"status": c.clusterStatus, "token": c.clusterToken},
		"secrets": {"rotate": c.secretsRotate},
	}
	for g, subs := range c.mftCommands() {
		commands[g] = map[string]command{}
		for n, f := range subs {
			commands[g][n] = f
		}
	}
	subs, ok := commands[group]
	if !ok {
		return fmt.Errorf("unknown command %q (commands: nodes, cluster, users, token, license, secrets, servers, accounts, partners, remote-accounts, rules, transfers, history; see udmgctl help)", group)
	}
	cmd, ok := subs[sub]
	if !ok {
		var names []string
		for _, n := range []string{"list", "add", "delete", "create", "revoke", "show", "install", "keygen", "sign", "status", "token", "remove", "rotate", "enable", "disable", "pause", "resume", "cancel", "retry"} {
			if subs[n] != nil {
				names = append(names, n)
			}
		}
		if sub == "" {
			return fmt.Errorf("%s: missing subcommand (%s)", group, strings.Join(names, ", "))
		}
		return fmt.Errorf("%s: unknown subcommand %q (%s)", group, sub, strings.Join(names, ", "))
	}
	return cmd(rest[2:])
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// positional checks the number of positional arguments.
func positional(name string, args []string, want ...string) error {
	if len(args) != len(want) {
		if len(want) == 0 {
			return fmt.Errorf("%s: unexpected argument %q", name, args[0])
		}
		return fmt.Errorf("%s: want %s, got %d argument(s)", name, strings.Join(want, " "), len(args))
	}
	return nil
}
