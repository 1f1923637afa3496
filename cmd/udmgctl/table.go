package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strings"
	"text/tabwriter"

	"github.com/udmg/gateway/fsm"
)

// command is one udmgctl command. The table of them (commands) is the one
// place a command is declared: the dispatcher, `udmgctl help`, each
// command's -h and the shell completion scripts are all made from it, and
// the flags come from the command's own flag set (see flagsOf).
type command struct {
	path     string // the words naming it: "transfers add"
	synopsis string // what follows them: "--rule R --partner P ..."
	summary  string // one line in udmgctl help
	note     string // more, in its -h only
	run      func(args []string) error
}

// commands is every udmgctl command, in the order udmgctl help lists them.
func (c *cli) commands() []command {
	return []command{
		{path: "nodes list", summary: "the cluster's nodes and their modes", run: c.nodesList},
		{path: "nodes remove", synopsis: "ID", summary: "remove a stopped node from the cluster (Raft voters and node table)", run: c.nodesRemove},
		{path: "cluster status", summary: "who is ACTIVE, the lease epoch, time until the lease expires", run: c.clusterStatus},
		{path: "cluster token", summary: "print a fresh random [cluster] JoinToken (offline)", run: c.clusterToken},
		{path: "users list", summary: "users and their permissions", run: c.usersList},
		{path: "users add", synopsis: "NAME --password PW [--perms transfers=rw-,users=r--]", summary: "add a user",
			note: "Here --password is the new user's; give yours before the command or in UDMGCTL_PASSWORD.", run: c.usersAdd},
		{path: "users delete", synopsis: "NAME", summary: "delete a user", run: c.usersDelete},
		{path: "servers list", summary: "local servers the ACTIVE node opens", run: c.serversList},
		{path: "servers add", synopsis: "NAME --protocol sftp|ftp --port N [--root DIR] [--passive 30000-30009] [--public-host H] [--tls [--tls-required]]",
			summary: "add a local SFTP or FTP(S) server", run: c.serversAdd},
		{path: "servers delete", synopsis: "NAME", summary: "delete a local server", run: c.deleter("servers delete", "/api/servers/%s", "NAME")},
		{path: "servers enable", synopsis: "NAME", summary: "open a local server again", run: c.putter("servers enable", "/api/servers/%s/enable", "NAME")},
		{path: "servers disable", synopsis: "NAME", summary: "close a local server (kept, not served)", run: c.putter("servers disable", "/api/servers/%s/disable", "NAME")},
		{path: "accounts list", synopsis: "SERVER", summary: "the local accounts of a server",
			run: c.lister("accounts list", "/api/servers/%s/accounts", "accounts", []string{"login", "hasPassword", "publicKeys"}, "SERVER")},
		{path: "accounts add", synopsis: "SERVER LOGIN [--password PW] [--key-file id.pub]", summary: "add a local account (password and/or public key)",
			run: c.accountsAdd("accounts add", "/api/servers/%s/accounts", "key-file", "publicKeys")},
		{path: "accounts delete", synopsis: "SERVER LOGIN", summary: "delete a local account", run: c.deleter("accounts delete", "/api/servers/%s/accounts/%s", "SERVER", "LOGIN")},
		{path: "partners list", summary: "remote servers transfers go to or come from",
			run: c.lister("partners list", "/api/partners", "partners", []string{"name", "protocol", "address", "tls", "hostKey"})},
		{path: "partners add", synopsis: `NAME --protocol sftp|ftp --address HOST:PORT [--host-key "ssh-ed25519 AAAA…"] [--tls [--tls-cert-file PEM]]`,
			summary: "add a partner", note: "An sftp partner needs its host key; an FTPS partner (--tls) may pin its certificate or CA (PEM).", run: c.partnersAdd},
		{path: "partners delete", synopsis: "NAME", summary: "delete a partner", run: c.deleter("partners delete", "/api/partners/%s", "NAME")},
		{path: "remote-accounts list", synopsis: "PARTNER", summary: "our accounts at a partner",
			run: c.lister("remote-accounts list", "/api/partners/%s/accounts", "accounts", []string{"login", "hasPassword", "hasPrivateKey"}, "PARTNER")},
		{path: "remote-accounts add", synopsis: "PARTNER LOGIN [--password PW] [--key-file id_ed25519]", summary: "add our account at a partner",
			note: "The password and the private key are sealed with the cluster's secrets key before they are stored.",
			run:  c.accountsAdd("remote-accounts add", "/api/partners/%s/accounts", "key-file", "privateKey")},
		{path: "remote-accounts delete", synopsis: "PARTNER LOGIN", summary: "delete our account at a partner",
			run: c.deleter("remote-accounts delete", "/api/partners/%s/accounts/%s", "PARTNER", "LOGIN")},
		{path: "rules list", summary: "transfer rules (with how many tasks each list chains)", run: c.lister("rules list", "/api/rules", "rules", []string{"name", "direction", "path", "localDir", "preTasks", "postTasks", "errorTasks"})},
		{path: "rules add", synopsis: "NAME --direction send|receive --path REMOTE_DIR [--local-dir DIR] [--pre-tasks|--post-tasks|--error-tasks JSON|@FILE]", summary: "add a rule", run: c.rulesAdd},
		{path: "rules update", synopsis: "NAME send|receive [--path REMOTE_DIR] [--local-dir DIR] [--pre-tasks|--post-tasks|--error-tasks JSON|@FILE]", summary: "change a rule's paths or tasks", run: c.rulesUpdate},
		{path: "keys list", summary: "OpenPGP keys of the tasks (never the keys themselves)", run: c.lister("keys list", "/api/keys", "keys", []string{"name", "private", "fingerprint"})},
		{path: "keys add", synopsis: "NAME --file ARMORED_KEY", summary: "store an OpenPGP key, sealed", run: c.keysAdd},
		{path: "keys delete", synopsis: "NAME", summary: "delete an OpenPGP key", run: c.deleter("keys delete", "/api/keys/%s", "NAME")},
		{path: "rules delete", synopsis: "NAME send|receive", summary: "delete a rule", run: c.deleter("rules delete", "/api/rules/%s/%s", "NAME", "DIRECTION")},
		{path: "transfers list", synopsis: "[--status S]", summary: "live transfers", run: c.transfersList},
		{path: "transfers show", synopsis: "ID [--follow]", summary: "one transfer; --follow draws its progress until it ends", run: c.transfersShow},
		{path: "transfers add", synopsis: "--rule R --partner P --account A --file F [--direction send|receive]", summary: "plan a client transfer with a partner", run: c.transfersAdd},
		{path: "transfers pause", synopsis: "ID", summary: "pause a transfer", run: c.putter("transfers pause", "/api/transfers/%s/pause", "ID")},
		{path: "transfers resume", synopsis: "ID", summary: "resume a paused or interrupted transfer", run: c.putter("transfers resume", "/api/transfers/%s/resume", "ID")},
		{path: "transfers cancel", synopsis: "ID", summary: "cancel a transfer", run: c.putter("transfers cancel", "/api/transfers/%s/cancel", "ID")},
		{path: "transfers retry", synopsis: "ID", summary: "plan a failed or cancelled transfer again", run: c.putter("transfers retry", "/api/transfers/%s/retry", "ID")},
		{path: "schedules list", summary: "schedules of transfers: at a time, on a cron spec, watching a directory, polling a partner",
			run: c.lister("schedules list", "/api/schedules", "schedules", []string{"name", "kind", "enabled", "rule", "direction", "partner", "cron", "at", "dir", "lastRun", "nextRun"})},
		{path: "schedules add", synopsis: "NAME --kind at|cron|watch|poll --rule R --partner P --account A [--at T | --cron SPEC] [--file F] [--dir D] [--after delete|move:DIR]",
			summary: "add a schedule", note: "at and cron move --file; watch sends each new complete file of --dir (under GatewayHome); poll fetches each new file of the partner's --dir.",
			run: c.schedulesAdd},
		{path: "schedules delete", synopsis: "NAME", summary: "delete a schedule", run: c.deleter("schedules delete", "/api/schedules/%s", "NAME")},
		{path: "schedules enable", synopsis: "NAME", summary: "run a schedule again", run: c.putter("schedules enable", "/api/schedules/%s/enable", "NAME")},
		{path: "schedules disable", synopsis: "NAME", summary: "stop running a schedule (kept)", run: c.putter("schedules disable", "/api/schedules/%s/disable", "NAME")},
		{path: "history list", synopsis: "[--status S] [--limit N]", summary: "finished transfers, newest first", run: c.historyList},
		{path: "token create", summary: "print a bearer token (use it with --token)", run: c.tokenCreate},
		{path: "token revoke", synopsis: "--token T", summary: "revoke a bearer token", run: c.tokenRevoke},
		{path: "license show", synopsis: "[--file F [--pubkey P]]", summary: "the cluster's license, or a license file checked locally", run: c.licenseShow},
		{path: "license install", synopsis: "FILE", summary: "install a license file in the cluster", run: c.licenseInstall},
		{path: "license keygen", synopsis: "--out DIR", summary: "make a vendor key pair (vendor.key, vendor.pub)", run: c.licenseKeygen},
		{path: "license sign", synopsis: "--key vendor.key --licensee NAME --nodes N --expires 2027-12-31 [--out F]", summary: "sign a license file (vendor)", run: c.licenseSign},
		{path: "secrets list", summary: "secrets of the tasks (#SECRET:NAME#; never the values)", run: c.lister("secrets list", "/api/task-secrets", "secrets", []string{"name"})},
		{path: "secrets add", synopsis: "NAME --value-file FILE", summary: "store a secret of the tasks, sealed", run: c.secretsPut("secrets add")},
		{path: "secrets update", synopsis: "NAME --value-file FILE", summary: "give a secret of the tasks a new value", run: c.secretsPut("secrets update")},
		{path: "secrets delete", synopsis: "NAME", summary: "delete a secret no rule refers to", run: c.deleter("secrets delete", "/api/task-secrets/%s", "NAME")},
		{path: "secrets rotate", summary: "a new secrets key; every sealed password and key resealed", run: c.secretsRotate},
		{path: "version", summary: "print udmgctl's version, commit and Go version", run: c.version},
		{path: "completion bash", summary: "the bash completion script: source <(udmgctl completion bash)", run: c.completion("bash")},
		{path: "completion zsh", summary: "the zsh completion script: source <(udmgctl completion zsh)", run: c.completion("zsh")},
	}
}

// enum is a flag whose values are a set of words: any case is accepted
// and sent in the API's, and help and completion offer the words.
type enum struct {
	canon  func(string) string
	values []string
}

// enums are the enumerated flags, by name (the same in every command).
var enums = map[string]enum{
	"status": {strings.ToUpper, []string{fsm.StatusPlanned, fsm.StatusRunning, fsm.StatusPaused, fsm.StatusInterrupted,
		fsm.StatusError, fsm.StatusDone, fsm.StatusCancelled}},
	"protocol":  {strings.ToLower, []string{fsm.ProtoSFTP, fsm.ProtoFTP}},
	"direction": {strings.ToLower, []string{"send", "receive"}},
	"kind":      {strings.ToLower, []string{fsm.ScheduleAt, fsm.ScheduleCron, fsm.ScheduleWatch, fsm.SchedulePoll}},
}

// canonEnums puts the enumerated flags of fs in the API's case; the API
// checks the values themselves (and names the field when it refuses one).
func canonEnums(fs *flag.FlagSet) error {
	var err error
	fs.Visit(func(f *flag.Flag) {
		if e, ok := enums[f.Name]; ok && err == nil {
			v := f.Value.String()
			for _, known := range e.values {
				if strings.EqualFold(v, known) {
					v = known
				}
			}
			err = f.Value.Set(e.canon(v))
		}
	})
	return err
}

// canonPositional puts the positional arguments named like an enumerated
// flag (rules delete NAME DIRECTION) in the API's case.
func canonPositional(pos, want []string) []string {
	for i, name := range want {
		if e, ok := enums[strings.ToLower(name)]; ok && i < len(pos) {
			pos[i] = e.canon(pos[i])
		}
	}
	return pos
}

// helpRequest is what a command's flag parsing returns for -h: the
// dispatcher prints that command's help from it.
type helpRequest struct{ fs *flag.FlagSet }

func (h *helpRequest) Error() string { return flag.ErrHelp.Error() }
func (h *helpRequest) Unwrap() error { return flag.ErrHelp }

// usageError is a command line its command cannot run; it is reported
// with where that command's help is.
type usageError struct{ err error }

func (u *usageError) Error() string { return u.err.Error() }
func (u *usageError) Unwrap() error { return u.err }

var (
	undefinedFlag = regexp.MustCompile(`^flag provided but not defined: -+(.*)$`)
	invalidValue  = regexp.MustCompile(`^invalid (?:boolean )?value ("(?:[^"\\]|\\.)*") for (?:flag )?-+([^:]*): (.*)$`)
	needsArgument = regexp.MustCompile(`^flag needs an argument: -+(.*)$`)
)

// flagError rewrites the flag package's messages to name the flag as it
// is written (--name) and say what it wants.
func flagError(fs *flag.FlagSet, err error) error {
	msg := err.Error()
	if m := undefinedFlag.FindStringSubmatch(msg); m != nil {
		if fs.Name() == "udmgctl" {
			return fmt.Errorf("unknown flag --%s (global flags: %s)", m[1], strings.Join(strings.Fields(globalFlagWords()), ", "))
		}
		return fmt.Errorf("unknown flag --%s (%s)", m[1], ownFlags(fs))
	}
	if m := invalidValue.FindStringSubmatch(msg); m != nil {
		want := "a valid value"
		if f := fs.Lookup(m[2]); f != nil {
			switch placeholder(f) {
			case "N":
				want = "a whole number"
			case "":
				want = "true or false"
			}
		}
		return fmt.Errorf("--%s %s: want %s", m[2], m[1], want)
	}
	if m := needsArgument.FindStringSubmatch(msg); m != nil {
		f := fs.Lookup(m[1])
		if f != nil {
			return fmt.Errorf("--%s needs a value (--%s %s)", m[1], m[1], placeholder(f))
		}
		return fmt.Errorf("--%s needs a value", m[1])
	}
	return err
}

// globalNames are the flags every command accepts (globalFlags).
var globalNames = []string{"addr", "user", "password", "token", "json"}

// ownFlags says which flags of fs are its command's own.
func ownFlags(fs *flag.FlagSet) string {
	var out []string
	fs.VisitAll(func(f *flag.Flag) {
		if f.Usage != "" {
			out = append(out, "--"+f.Name)
		}
	})
	if len(out) == 0 {
		return "it takes only the global flags"
	}
	return "its flags: " + strings.Join(out, ", ") + " and the global ones"
}

// placeholder is how the value of f is written in help: its enum words,
// the word in `backquotes` of its usage, N for numbers, "" for booleans.
func placeholder(f *flag.Flag) string {
	if e, ok := enums[f.Name]; ok {
		return strings.Join(e.values, "|")
	}
	name, _ := flag.UnquoteUsage(f)
	switch name {
	case "", "value":
		if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
			return ""
		}
		return "VALUE"
	case "int", "uint", "int64", "uint64", "float":
		return "N"
	case "string":
		return strings.ToUpper(f.Name)
	case "duration":
		return "DURATION"
	}
	return name
}

// flagsOf is the flag set a command defines, learnt by running it with -h
// (every command parses its flags before anything else).
func flagsOf(cmd command) *flag.FlagSet {
	var h *helpRequest
	if err := cmd.run([]string{"-h"}); !errors.As(err, &h) {
		panic(fmt.Sprintf("udmgctl %s: -h did not stop at its flags (%v)", cmd.path, err))
	}
	return h.fs
}

// find is the command args start with, and the arguments after its words.
func find(table []command, args []string) (command, []string, bool) {
	for _, cmd := range table {
		words := strings.Fields(cmd.path)
		if len(args) >= len(words) && slices.Equal(args[:len(words)], words) {
			return cmd, args[len(words):], true
		}
	}
	return command{}, nil, false
}

// groups lists the first words of the commands, in table order.
func groups(table []command) []string {
	var out []string
	for _, cmd := range table {
		if g := strings.Fields(cmd.path)[0]; !slices.Contains(out, g) {
			out = append(out, g)
		}
	}
	return out
}

// subcommands lists the second words of group's commands.
func subcommands(table []command, group string) []string {
	var out []string
	for _, cmd := range table {
		if w := strings.Fields(cmd.path); len(w) == 2 && w[0] == group {
			out = append(out, w[1])
		}
	}
	return out
}

const usageHead = `udmgctl administers a UDMG gateway cluster over its REST API.

Usage: udmgctl [global flags] COMMAND [flags] [args]
       udmgctl COMMAND -h     (or udmgctl help COMMAND) for one command's flags

Commands:
`

const usageTail = `
Global flags (also accepted after the command):
  --addr URL         API address (env UDMGCTL_ADDR, default http://127.0.0.1:8080)
  --user NAME        user name (env UDMGCTL_USER, default admin)
  --password PW      password (env UDMGCTL_PASSWORD)
  --token T          bearer token instead of a password (env UDMGCTL_TOKEN)
  --json             print the API's JSON instead of tables

Permissions are written like file modes per domain (administration, servers,
partners, rules, users, transfers): r read, w write, d delete, - none.
Enumerated values (--status, --protocol, --direction) may be given in any case.
`

// writeUsage is udmgctl help: every command of the table with its summary.
func writeUsage(w io.Writer, table []command) {
	io.WriteString(w, usageHead)
	listCommands(w, table)
	io.WriteString(w, usageTail)
}

// listCommands writes one line a command, its summary at column 37 (on
// the next line after a long synopsis).
func listCommands(w io.Writer, cmds []command) {
	const column = 37
	for _, cmd := range cmds {
		line := "  " + strings.TrimSpace(cmd.path+" "+cmd.synopsis)
		if len(line) < column-1 {
			fmt.Fprintf(w, "%-*s%s\n", column, line, cmd.summary)
		} else {
			fmt.Fprintf(w, "%s\n%*s%s\n", line, column, "", cmd.summary)
		}
	}
}

// writeGroupHelp is `udmgctl GROUP -h`: that group's commands.
func writeGroupHelp(w io.Writer, table []command, group string) {
	var mine []command
	for _, cmd := range table {
		if strings.Fields(cmd.path)[0] == group {
			mine = append(mine, cmd)
		}
	}
	fmt.Fprintf(w, "Usage: udmgctl %s SUBCOMMAND [flags] [args]\n       udmgctl %s SUBCOMMAND -h for its flags\n\nCommands:\n", group, group)
	listCommands(w, mine)
}

// writeCommandHelp is `udmgctl COMMAND -h`: its synopsis, what it does and
// its own flags.
func writeCommandHelp(w io.Writer, cmd command, fs *flag.FlagSet) {
	fmt.Fprintf(w, "Usage: udmgctl %s\n\n%s.\n", strings.TrimSpace(cmd.path+" "+cmd.synopsis), upperFirst(cmd.summary))
	if cmd.note != "" {
		fmt.Fprintf(w, "%s\n", cmd.note)
	}
	own := false
	tw := tabwriter.NewWriter(w, 0, 0, 3, ' ', 0)
	fs.VisitAll(func(f *flag.Flag) {
		if f.Usage == "" {
			return
		}
		if !own {
			fmt.Fprintf(w, "\nFlags:\n")
			own = true
		}
		_, usage := flag.UnquoteUsage(f)
		if _, ok := enums[f.Name]; ok {
			usage += " (any case)"
		}
		fmt.Fprintf(tw, "  %s\t%s\n", strings.TrimSpace("--"+f.Name+" "+placeholder(f)), usage)
	})
	tw.Flush()
	fmt.Fprintf(w, "\nGlobal flags: --addr URL, --user NAME, --password PW, --token T, --json (see udmgctl help)\n")
}

func upperFirst(s string) string {
	if s == "" {
		return s
	}
	return strings.ToUpper(s[:1]) + s[1:]
}
