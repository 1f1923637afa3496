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
	"fmt"
	"io"
	"os"
	"strings"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
	"github.com/udmg/gateway/version"
)

func main() {
	os.Exit(run(os.Args[1:], os.Getenv, os.Stdout, os.Stderr))
}

// cli holds the global flags and where output goes.
type cli struct {
	addr, user, password, token string
	json                        bool
	stdout, stderr              io.Writer
	root, helpCmd               *cobra.Command // the command tree (tree.go) and its help command
}

// run is udmgctl with its environment passed in, so tests can call it; it
// returns the exit code: 0, or 1 for any error (a usage error too).
func run(args []string, getenv func(string) string, stdout, stderr io.Writer) int {
	c := &cli{stdout: stdout, stderr: stderr,
		addr: or(getenv("UDMGCTL_ADDR"), "http://127.0.0.1:8080"), user: or(getenv("UDMGCTL_USER"), "admin"),
		password: getenv("UDMGCTL_PASSWORD"), token: getenv("UDMGCTL_TOKEN")}
	c.root = c.tree()
	valued := valuedFlags(c.root)
	if len(args) > 0 && strings.HasPrefix(args[0], "__complete") {
		// The word being completed stays as typed.
		args = append(goFlagSyntax(args[:len(args)-1], valued), args[len(args)-1])
	} else {
		args = goFlagSyntax(args, valued)
	}
	c.root.SetArgs(args)
	_, err := c.root.ExecuteC()
	var u *usageError
	if isFlagError(err) && !errors.As(err, &u) {
		// cobra parses the flags before the command itself, as the root's
		// (TraverseChildren), without its FlagErrorFunc.
		err = &usageError{c.root, flagError(c.root, err)}
	}
	switch {
	case err == nil:
		return 0
	case errors.As(err, &u) && u.cmd != nil && !u.cmd.HasParent():
		// The root's usage is every command: say where it is instead.
		fmt.Fprintln(stderr, "udmgctl: "+oneLine(err.Error())+" (see udmgctl help)")
	case errors.As(err, &u) && u.cmd != nil:
		fmt.Fprintf(stderr, "udmgctl: %s: %s\n\n", strings.TrimPrefix(u.cmd.CommandPath(), "udmgctl "), oneLine(err.Error()))
		u.cmd.SetOut(stderr)
		u.cmd.Help()
	default:
		fmt.Fprintln(stderr, "udmgctl: "+oneLine(err.Error()))
	}
	return 1
}

func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}

// globalFlags registers the global flags on fs, with the values from the
// environment as defaults.
func (c *cli) globalFlags(fs *pflag.FlagSet) {
	fs.StringVar(&c.addr, "addr", c.addr, "API address (env UDMGCTL_ADDR)")
	fs.StringVar(&c.user, "user", c.user, "user name (env UDMGCTL_USER)")
	fs.StringVar(&c.password, "password", c.password, "password (env UDMGCTL_PASSWORD)")
	fs.StringVar(&c.token, "token", c.token, "bearer token instead of a password (env UDMGCTL_TOKEN)")
	fs.BoolVar(&c.json, "json", c.json, "print the API's JSON instead of tables")
}

// globalNames are the global flags as written.
func globalNames() []string {
	return []string{"--addr", "--user", "--password", "--token", "--json"}
}

func or(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// version is `udmgctl version`: this binary's version, commit and Go
// version, one line (or JSON with --json).
func (c *cli) version([]string) error {
	in := version.Read()
	if c.json {
		return c.encodeJSON(map[string]any{"version": in.Version, "commit": in.Commit, "modified": in.Modified, "go": in.Go})
	}
	fmt.Fprintln(c.stdout, in.Line("udmgctl"))
	return nil
}
