package main

import (
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/pflag"
	"github.com/udmg/gateway/fsm"
)

// command is one udmgctl command. The table of them (commands) is the one
// place a command is declared: the cobra command tree (tree.go) is built
// from it, and the help, the usage errors and the shell completion come
// from that tree.
type command struct {
	path     string   // the words naming it: "transfers add"
	synopsis string   // what follows them: "--rule R --partner P ..."
	summary  string   // one line in udmgctl help
	note     string   // more, in its -h only
	args     []string // its positional arguments, by name (exactly these)
	// A command with flags of its own defines them on fs and returns what
	// runs it; one without has run.
	flags func(fs *pflag.FlagSet) func(pos []string) error
	run   func(pos []string) error
}

// commands is every udmgctl command, in the order udmgctl help lists them.
func (c *cli) commands() []command {
	return []command{
		{path: "nodes list", summary: "the cluster's nodes and their modes", run: c.nodesList},
		{path: "nodes remove", synopsis: "ID", summary: "remove a stopped node from the cluster (Raft voters and node table)", args: []string{"ID"}, run: c.nodesRemove},
		{path: "cluster status", summary: "who is ACTIVE, the lease epoch, time until the lease expires", run: c.clusterStatus},
		{path: "cluster token", summary: "print a fresh random [cluster] JoinToken (offline)", run: c.clusterToken},
		{path: "users list", summary: "users and their permissions", run: c.usersList},
		{path: "users add", synopsis: "NAME --password PW [--perms transfers=rw-,users=r--]", summary: "add a user",
			note: "Here --password is the new user's; give yours before the command or in UDMGCTL_PASSWORD.", args: []string{"NAME"}, flags: c.usersAdd},
		{path: "users delete", synopsis: "NAME", summary: "delete a user", args: []string{"NAME"}, run: c.usersDelete},
		c.listCmd("servers list", "local servers the ACTIVE node opens", "/api/servers", "servers", []string{"name", "protocol", "port", "root", "tls", "enabled"}),
		{path: "servers add", synopsis: "NAME --protocol sftp|ftp --port N [--root DIR] [--passive 30000-30009] [--public-host H] [--tls [--tls-required]]",
			summary: "add a local SFTP or FTP(S) server", args: []string{"NAME"}, flags: c.serversAdd},
		c.deleteCmd("servers delete", "delete a local server", "/api/servers/%s", "NAME"),
		c.putCmd("servers enable", "open a local server again", "/api/servers/%s/enable", "NAME"),
		c.putCmd("servers disable", "close a local server (kept, not served)", "/api/servers/%s/disable", "NAME"),
		c.listCmd("accounts list", "the local accounts of a server", "/api/servers/%s/accounts", "accounts", []string{"login", "hasPassword", "publicKeys"}, "SERVER"),
		{path: "accounts add", synopsis: "SERVER LOGIN [--password PW] [--key-file id.pub]", summary: "add a local account (password and/or public key)",
			args: []string{"SERVER", "LOGIN"}, flags: c.accountsAdd("accounts add", "/api/servers/%s/accounts", "publicKeys")},
		c.deleteCmd("accounts delete", "delete a local account", "/api/servers/%s/accounts/%s", "SERVER", "LOGIN"),
		c.listCmd("partners list", "remote servers transfers go to or come from", "/api/partners", "partners", []string{"name", "protocol", "address", "tls", "hostKey"}),
		{path: "partners add", synopsis: `NAME --protocol sftp|ftp --address HOST:PORT [--host-key "ssh-ed25519 AAAA…"] [--tls [--tls-cert-file PEM]]`,
			summary: "add a partner", note: "An sftp partner needs its host key; an FTPS partner (--tls) may pin its certificate or CA (PEM).", args: []string{"NAME"}, flags: c.partnersAdd},
		c.deleteCmd("partners delete", "delete a partner", "/api/partners/%s", "NAME"),
		c.listCmd("remote-accounts list", "our accounts at a partner", "/api/partners/%s/accounts", "accounts", []string{"login", "hasPassword", "hasPrivateKey"}, "PARTNER"),
		{path: "remote-accounts add", synopsis: "PARTNER LOGIN [--password PW] [--key-file id_ed25519]", summary: "add our account at a partner",
			note: "The password and the private key are sealed with the cluster's secrets key before they are stored.",
			args: []string{"PARTNER", "LOGIN"}, flags: c.accountsAdd("remote-accounts add", "/api/partners/%s/accounts", "privateKey")},
		c.deleteCmd("remote-accounts delete", "delete our account at a partner", "/api/partners/%s/accounts/%s", "PARTNER", "LOGIN"),
		c.listCmd("rules list", "transfer rules (with how many tasks each list chains)", "/api/rules", "rules", []string{"name", "direction", "path", "localDir", "preTasks", "postTasks", "errorTasks"}),
		{path: "rules add", synopsis: "NAME --direction send|receive --path REMOTE_DIR [--local-dir DIR] [--pre-tasks|--post-tasks|--error-tasks JSON|@FILE]", summary: "add a rule",
			args: []string{"NAME"}, flags: c.rulesAdd},
		{path: "rules update", synopsis: "NAME send|receive [--path REMOTE_DIR] [--local-dir DIR] [--pre-tasks|--post-tasks|--error-tasks JSON|@FILE]", summary: "change a rule's paths or tasks",
			args: []string{"NAME", "DIRECTION"}, flags: c.rulesUpdate},
		c.deleteCmd("rules delete", "delete a rule", "/api/rules/%s/%s", "NAME", "DIRECTION"),
		c.listCmd("keys list", "OpenPGP keys of the tasks (never the keys themselves)", "/api/keys", "keys", []string{"name", "private", "fingerprint"}),
		{path: "keys add", synopsis: "NAME --file ARMORED_KEY", summary: "store an OpenPGP key, sealed", args: []string{"NAME"}, flags: c.keysAdd},
		c.deleteCmd("keys delete", "delete an OpenPGP key", "/api/keys/%s", "NAME"),
		{path: "transfers list", synopsis: "[--status S]", summary: "live transfers", flags: c.transfersList},
		{path: "transfers show", synopsis: "ID [--follow]", summary: "one transfer; --follow draws its progress until it ends", args: []string{"ID"}, flags: c.transfersShow},
		{path: "transfers add", synopsis: "--rule R --partner P --account A --file F [--direction send|receive]", summary: "plan a client transfer with a partner", flags: c.transfersAdd},
		c.putCmd("transfers pause", "pause a transfer", "/api/transfers/%s/pause", "ID"),
		c.putCmd("transfers resume", "resume a paused or interrupted transfer", "/api/transfers/%s/resume", "ID"),
		c.putCmd("transfers cancel", "cancel a transfer", "/api/transfers/%s/cancel", "ID"),
		c.putCmd("transfers retry", "plan a failed or cancelled transfer again", "/api/transfers/%s/retry", "ID"),
		c.listCmd("schedules list", "schedules of transfers: at a time, on a cron spec, watching a directory, polling a partner", "/api/schedules", "schedules", []string{"name", "kind", "enabled", "rule", "direction", "partner", "cron", "at", "dir", "lastRun", "nextRun"}),
		{path: "schedules add", synopsis: "NAME --kind at|cron|watch|poll --rule R --partner P --account A [--at T | --cron SPEC] [--file F] [--dir D] [--after delete|move:DIR]",
			summary: "add a schedule", note: "at and cron move --file; watch sends each new complete file of --dir (under GatewayHome); poll fetches each new file of the partner's --dir.",
			args: []string{"NAME"}, flags: c.schedulesAdd},
		c.deleteCmd("schedules delete", "delete a schedule", "/api/schedules/%s", "NAME"),
		c.putCmd("schedules enable", "run a schedule again", "/api/schedules/%s/enable", "NAME"),
		c.putCmd("schedules disable", "stop running a schedule (kept)", "/api/schedules/%s/disable", "NAME"),
		{path: "history list", synopsis: "[--status S] [--rule R] [--partner P] [--account A] [--since T] [--until T] [--limit N]", summary: "finished transfers, newest first", flags: c.historyList},
		{path: "token create", summary: "print a bearer token (use it with --token)", run: c.tokenCreate},
		{path: "token revoke", synopsis: "--token T", summary: "revoke a bearer token", run: c.tokenRevoke},
		{path: "license show", synopsis: "[--file F [--pubkey P]]", summary: "the cluster's license, or a license file checked locally", flags: c.licenseShow},
		{path: "license install", synopsis: "FILE", summary: "install a license file in the cluster", args: []string{"FILE"}, run: c.licenseInstall},
		{path: "license keygen", synopsis: "--out DIR", summary: "make a vendor key pair (vendor.key, vendor.pub)", flags: c.licenseKeygen},
		{path: "license sign", synopsis: "--key vendor.key --licensee NAME --nodes N --expires 2027-12-31 [--out F]", summary: "sign a license file (vendor)", flags: c.licenseSign},
		c.listCmd("secrets list", "secrets of the tasks (#SECRET:NAME#; never the values)", "/api/task-secrets", "secrets", []string{"name"}),
		{path: "secrets add", synopsis: "NAME --value-file FILE", summary: "store a secret of the tasks, sealed", args: []string{"NAME"}, flags: c.secretsPut("secrets add")},
		{path: "secrets update", synopsis: "NAME --value-file FILE", summary: "give a secret of the tasks a new value", args: []string{"NAME"}, flags: c.secretsPut("secrets update")},
		c.deleteCmd("secrets delete", "delete a secret no rule refers to", "/api/task-secrets/%s", "NAME"),
		{path: "secrets rotate", summary: "a new secrets key; every sealed password and key resealed", run: c.secretsRotate},
		{path: "version", summary: "print udmgctl's version, commit and Go version", run: c.version},
		{path: "completion bash", summary: "the bash completion script: source <(udmgctl completion bash)", run: c.completion("bash")},
		{path: "completion zsh", summary: "the zsh completion script: source <(udmgctl completion zsh)", run: c.completion("zsh")},
	}
}

// listCmd is a command printing field columns of the objects the API
// lists under key; its arguments fill pathFmt.
func (c *cli) listCmd(path, summary, pathFmt, key string, fields []string, args ...string) command {
	return command{path: path, synopsis: synopsis(args), summary: summary, args: args, run: func(pos []string) error {
		return c.printList(fmt.Sprintf(pathFmt, escaped(pos)...)+"?limit=1000", key, fields)
	}}
}

// deleteCmd and putCmd are commands sending DELETE or PUT to the object
// their arguments name.
func (c *cli) deleteCmd(path, summary, pathFmt string, args ...string) command {
	return command{path: path, synopsis: synopsis(args), summary: summary, args: args, run: c.action(path, "DELETE", pathFmt, "deleted")}
}

func (c *cli) putCmd(path, summary, pathFmt string, args ...string) command {
	return command{path: path, synopsis: synopsis(args), summary: summary, args: args, run: c.action(path, "PUT", pathFmt, "done")}
}

// synopsis writes positional arguments: their names, an enumerated one's
// words (NAME send|receive).
func synopsis(args []string) string {
	words := slices.Clone(args)
	for i, a := range words {
		if e, ok := enums[strings.ToLower(a)]; ok {
			words[i] = strings.Join(e.values, "|")
		}
	}
	return strings.Join(words, " ")
}

// enum is a flag whose values are a set of words: any case is accepted
// and sent in the API's, and help and completion offer the words.
type enum struct {
	canonCase func(string) string
	values    []string
}

// enums are the enumerated flags, by name (the same in every command); a
// positional argument named like one (rules delete NAME DIRECTION) is one
// too.
var enums = map[string]enum{
	"status": {strings.ToUpper, []string{fsm.StatusPlanned, fsm.StatusRunning, fsm.StatusPaused, fsm.StatusInterrupted,
		fsm.StatusError, fsm.StatusDone, fsm.StatusCancelled}},
	"protocol":  {strings.ToLower, []string{fsm.ProtoSFTP, fsm.ProtoFTP}},
	"direction": {strings.ToLower, []string{"send", "receive"}},
	"kind":      {strings.ToLower, []string{fsm.ScheduleAt, fsm.ScheduleCron, fsm.ScheduleWatch, fsm.SchedulePoll}},
}

// canon is v in the API's case: the enum's word it matches in any case,
// or v itself in the enum's case (the API then names the field refusing
// it).
func (e enum) canon(v string) string {
	for _, known := range e.values {
		if strings.EqualFold(v, known) {
			return known
		}
	}
	return e.canonCase(v)
}
