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
		writeUsage(stdout, c.commands())
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
	fs.BoolVar(&c.json, "json", c.json, "") // no usage: help lists it with the global flags
}

func newFlagSet(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported once, on one line
	fs.Usage = func() {}
	return fs
}

// parse reads flags wherever they appear among the positional arguments
// ("users add alice --password x" as well as "users add --password x alice"),
// puts enumerated values in the API's case, and returns a *helpRequest for
// -h and a *usageError naming the flag for a bad one.
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, &helpRequest{fs}
			}
			return nil, &usageError{fmt.Errorf("%s: %w", fs.Name(), flagError(fs, err))}
		}
		args = fs.Args()
		if len(args) == 0 {
			break
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
	if err := canonEnums(fs); err != nil {
		return nil, &usageError{fmt.Errorf("%s: %w", fs.Name(), err)}
	}
	return pos, nil
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
		return fmt.Errorf("%w (see udmgctl help)", flagError(fs, err))
	}
	rest := fs.Args()
	table := c.commands()
	help := false
	if len(rest) > 0 && rest[0] == "help" {
		rest, help = rest[1:], true
	}
	if len(rest) == 0 {
		return flag.ErrHelp
	}
	cmd, cmdArgs, ok := find(table, rest)
	if !ok {
		group := rest[0]
		subs := subcommands(table, group)
		switch {
		case len(subs) == 0:
			return fmt.Errorf("unknown command %q (commands: %s; see udmgctl help)", group, strings.Join(groups(table), ", "))
		case help || len(rest) > 1 && isHelpFlag(rest[1]):
			writeGroupHelp(c.stdout, table, group)
			return nil
		case len(rest) == 1:
			return fmt.Errorf("%s: missing subcommand (%s; see udmgctl %s -h)", group, strings.Join(subs, ", "), group)
		}
		return fmt.Errorf("%s: unknown subcommand %q (%s; see udmgctl %s -h)", group, rest[1], strings.Join(subs, ", "), group)
	}
	if help {
		cmdArgs = []string{"-h"}
	}
	err := cmd.run(cmdArgs)
	var h *helpRequest
	var u *usageError
	switch {
	case errors.As(err, &h):
		writeCommandHelp(c.stdout, cmd, h.fs)
		return nil
	case errors.As(err, &u):
		return fmt.Errorf("%w (see udmgctl %s -h)", err, cmd.path)
	}
	return err
}

func isHelpFlag(s string) bool {
	return s == "-h" || s == "--h" || s == "-help" || s == "--help"
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
			return &usageError{fmt.Errorf("%s: unexpected argument %q", name, args[0])}
		}
		return &usageError{fmt.Errorf("%s: want %s, got %d argument(s)", name, strings.Join(want, " "), len(args))}
	}
	return nil
}

// version is `udmgctl version`: this binary's version, commit and Go
// version, one line (or JSON with --json).
func (c *cli) version(args []string) error {
	if _, err := c.args("version", args, nil); err != nil {
		return err
	}
	in := version.Read()
	if c.json {
		return c.encodeJSON(map[string]any{"version": in.Version, "commit": in.Commit, "modified": in.Modified, "go": in.Go})
	}
	fmt.Fprintln(c.stdout, in.Line("udmgctl"))
	return nil
}
