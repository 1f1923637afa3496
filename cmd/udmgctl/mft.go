package main

import (
	"encoding/json"
	"fmt"
	"net/url"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/spf13/pflag"
	"github.com/udmg/gateway/httpapi/wire"
)

func escaped(pos []string) []any {
	out := make([]any, len(pos))
	for i, p := range pos {
		out[i] = url.PathEscape(p)
	}
	return out
}

func (c *cli) printList(path, key string, fields []string) error {
	var out map[string][]map[string]any
	resp, err := c.callJSON("GET", path, nil, &out)
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(resp.body)
		return nil
	}
	tw := c.table()
	fmt.Fprintln(tw, strings.ToUpper(strings.Join(fields, "\t")))
	for _, o := range out[key] {
		row := make([]string, len(fields))
		for i, f := range fields {
			row[i] = cell(o[f])
		}
		fmt.Fprintln(tw, strings.Join(row, "\t"))
	}
	return tw.Flush()
}

func cell(v any) string {
	switch v := v.(type) {
	case nil:
		return "-"
	case string:
		return or(v, "-")
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64)
	case []any:
		return fmt.Sprintf("%d", len(v))
	}
	return fmt.Sprint(v)
}

// action sends method to the object the arguments name.
func (c *cli) action(name, method, pathFmt, said string) func([]string) error {
	return func(pos []string) error {
		resp, err := c.call(method, fmt.Sprintf(pathFmt, escaped(pos)...), nil)
		if err != nil {
			return err
		}
		if c.json && len(resp.body) > 0 {
			c.printJSON(resp.body)
			return nil
		}
		fmt.Fprintf(c.stdout, "%s %s: %s\n", name, strings.Join(pos, " "), said)
		return nil
	}
}

// create posts body and prints what the API answered.
func (c *cli) create(path string, body map[string]any, what string) error {
	resp, err := c.callJSON("POST", path, body, nil)
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(resp.body)
		return nil
	}
	fmt.Fprintln(c.stdout, what+" created")
	return nil
}

func (c *cli) serversAdd(fs *pflag.FlagSet) func([]string) error {
	protocol := fs.String("protocol", "", "sftp or ftp")
	port := fs.Int("port", 0, "port")
	root := fs.String("root", "", "homes directory under GatewayHome")
	passive := fs.String("passive", "", "FTP passive ports A-B")
	public := fs.String("public-host", "", "address for FTP passive replies")
	tls := fs.Bool("tls", false, "offer explicit FTPS")
	tlsRequired := fs.Bool("tls-required", false, "with --tls: refuse logins in clear")
	return func(pos []string) error {
		body := map[string]any{"name": pos[0], "protocol": *protocol, "port": *port, "root": *root, "publicHost": *public, "tls": *tls, "tlsRequired": *tlsRequired}
		if *passive != "" {
			a, b, ok := strings.Cut(*passive, "-")
			lo, err1 := strconv.Atoi(a)
			hi, err2 := strconv.Atoi(b)
			if !ok || err1 != nil || err2 != nil {
				return fmt.Errorf("servers add: --passive %q is not A-B", *passive)
			}
			body["passiveMin"], body["passiveMax"] = lo, hi
		}
		return c.create("/api/servers", body, "server "+pos[0])
	}
}

// accountsAdd adds a local account (key file: a public key) or a remote
// one (key file: a private key); --password is the account's (it shadows
// the global flag).
func (c *cli) accountsAdd(name, pathFmt, keyField string) func(*pflag.FlagSet) func([]string) error {
	return func(fs *pflag.FlagSet) func([]string) error {
		password := fs.String("password", "", "the account's password")
		keyFile := fs.String("key-file", "", "key file")
		return func(pos []string) error {
			body := map[string]any{"login": pos[1]}
			if *password != "" {
				body["password"] = *password
			}
			if *keyFile != "" {
				b, err := os.ReadFile(*keyFile)
				if err != nil {
					return fmt.Errorf("%s: --key-file: %w", name, err)
				}
				if keyField == "publicKeys" {
					body[keyField] = []string{strings.TrimSpace(string(b))}
				} else {
					body[keyField] = string(b)
				}
			}
			return c.create(fmt.Sprintf(pathFmt, url.PathEscape(pos[0])), body, "account "+pos[1])
		}
	}
}

func (c *cli) partnersAdd(fs *pflag.FlagSet) func([]string) error {
	protocol := fs.String("protocol", "", "sftp or ftp")
	address := fs.String("address", "", "host:port")
	hostKey := fs.String("host-key", "", "the partner's SSH host key (authorized_keys form)")
	useTLS := fs.Bool("tls", false, "ftp partner: explicit TLS (FTPS)")
	certFile := fs.String("tls-cert-file", "", "ftp partner with --tls: PEM certificate it must present, or its CA (default: system CAs)")
	return func(pos []string) error {
		body := map[string]any{"name": pos[0], "protocol": *protocol, "address": *address, "hostKey": *hostKey, "tls": *useTLS}
		if *certFile != "" {
			cert, err := os.ReadFile(*certFile)
			if err != nil {
				return fmt.Errorf("partners add: --tls-cert-file: %w", err)
			}
			body["tlsCert"] = string(cert)
		}
		return c.create("/api/partners", body, "partner "+pos[0])
	}
}

// keysAdd stores an armored OpenPGP key for the tasks under a name.
func (c *cli) keysAdd(fs *pflag.FlagSet) func([]string) error {
	file := fs.String("file", "", "the armored key (a partner's public key, or a private key)")
	passFile := fs.String("passphrase-file", "", "file holding the passphrase of a protected private key (first line); the import opens the key with it and keeps it nowhere")
	return func(pos []string) error {
		b, err := os.ReadFile(*file)
		if err != nil {
			return fmt.Errorf("keys add: --file: %w", err)
		}
		body := map[string]any{"name": pos[0], "key": string(b)}
		if *passFile != "" {
			if body["passphrase"], err = firstLine("keys add: --passphrase-file", *passFile); err != nil {
				return err
			}
		}
		return c.create("/api/keys", body, "key "+pos[0])
	}
}

// ruleFlags are the flags of rules add and rules update; body gives
// the API's fields of those set (all of them with all).
func ruleFlags(fs *pflag.FlagSet) (body func(all bool) (map[string]any, error)) {
	path := fs.String("path", "", "remote directory (client mode) and home directory (server mode)")
	localDir := fs.String("local-dir", "", "directory under GatewayHome for client-mode files")
	lists := map[string]*string{}
	for _, l := range [][2]string{{"pre-tasks", "preTasks"}, {"post-tasks", "postTasks"}, {"error-tasks", "errorTasks"}} {
		lists[l[1]] = fs.String(l[0], "", `the rule's `+l[1]+`: a JSON array of {"type", "args"}, or @FILE holding one ('[]': none)`)
	}
	return func(all bool) (map[string]any, error) {
		out := map[string]any{}
		set := map[string]bool{}
		fs.Visit(func(f *pflag.Flag) { set[f.Name] = true })
		if all || set["path"] {
			out["path"] = *path
		}
		if all || set["local-dir"] {
			out["localDir"] = *localDir
		}
		for field, v := range lists {
			if *v == "" {
				continue
			}
			text := []byte(*v)
			if name, ok := strings.CutPrefix(*v, "@"); ok {
				var err error
				if text, err = os.ReadFile(name); err != nil {
					return nil, fmt.Errorf("%s: %w", field, err)
				}
			}
			var list []map[string]any
			if err := json.Unmarshal(text, &list); err != nil {
				return nil, fmt.Errorf("%s: not a JSON array of tasks: %w", field, err)
			}
			out[field] = list
		}
		return out, nil
	}
}

func (c *cli) rulesAdd(fs *pflag.FlagSet) func([]string) error {
	direction := fs.String("direction", "", "send or receive")
	fields := ruleFlags(fs)
	return func(pos []string) error {
		body, err := fields(true)
		if err != nil {
			return fmt.Errorf("rules add: %w", err)
		}
		body["name"], body["direction"] = pos[0], *direction
		return c.create("/api/rules", body, "rule "+pos[0])
	}
}

// rulesUpdate changes the fields given of a rule (PATCH).
func (c *cli) rulesUpdate(fs *pflag.FlagSet) func([]string) error {
	fields := ruleFlags(fs)
	return func(pos []string) error {
		body, err := fields(false)
		if err != nil {
			return fmt.Errorf("rules update: %w", err)
		}
		resp, err := c.callJSON("PATCH", fmt.Sprintf("/api/rules/%s/%s", escaped(pos)...), body, nil)
		if err != nil {
			return err
		}
		if c.json {
			c.printJSON(resp.body)
			return nil
		}
		fmt.Fprintf(c.stdout, "rule %s %s updated\n", pos[0], pos[1])
		return nil
	}
}

var transferFields = []string{"id", "status", "direction", "protocol", "rule", "server", "partner", "account", "remotePath", "filesize", "percent", "attempts", "errorCode", "nextRetry"}

func (c *cli) transfersList(fs *pflag.FlagSet) func([]string) error {
	status := fs.String("status", "", "only transfers in this status")
	return func([]string) error {
		return c.printList("/api/transfers?limit=1000&status="+url.QueryEscape(*status), "transfers", transferFields)
	}
}

// finished says whether t will change no more by itself: DONE, CANCELLED,
// or ERROR (its attempts spent, or a cause no retry mends); only an
// operator's retry moves it on.
func finished(t wire.Transfer) bool {
	return t.Status == "DONE" || t.Status == "CANCELLED" || t.Status == "ERROR"
}

// followPoll is how often --follow reads the transfer; followOutage is how
// long it keeps trying while no node answers (a failover takes seconds).
const (
	followPoll   = 500 * time.Millisecond
	followOutage = time.Minute
)

func (c *cli) transfersShow(fs *pflag.FlagSet) func([]string) error {
	follow := fs.Bool("follow", false, "draw the progress until the transfer ends")
	return func(pos []string) error { return c.showTransfer(pos[0], *follow) }
}

func (c *cli) showTransfer(id string, follow bool) error {
	path := "/api/transfers/" + url.PathEscape(id)
	var t wire.Transfer
	resp, err := c.callJSON("GET", path, nil, &t)
	if err != nil {
		return err
	}
	if !follow {
		if c.json {
			c.printJSON(resp.body)
			return nil
		}
		tw := c.table()
		for _, kv := range [][2]string{{"ID", fmt.Sprint(t.ID)}, {"Rule", t.Rule + " (" + t.Direction + ")"},
			{"With", strings.Trim(t.Partner+t.Server+" / "+t.Account, " /")}, {"Local path", t.LocalPath}, {"Remote path", t.RemotePath},
			{"Status", t.Status}, {"Progress", progressText(t)}, {"Attempts", fmt.Sprintf("%d of %d", t.Attempts, t.MaxAttempts)},
			{"Error code", or(t.ErrorCode, "-")}, {"Error", or(t.ErrorDetails, "-")}, {"Next retry", nextRetryText(t)}, {"Node", t.NodeID}} {
			fmt.Fprintf(tw, "%s:\t%s\n", kv[0], kv[1])
		}
		if err := tw.Flush(); err != nil || len(t.Tasks) == 0 {
			return err
		}
		return c.printTasks(t.Tasks)
	}
	return c.follow(path, t)
}

// printTasks lists a transfer's chain: each task with its state, duration,
// node and error.
func (c *cli) printTasks(runs []wire.TaskRun) error {
	fmt.Fprintln(c.stdout, "Tasks:")
	tw := c.table()
	fmt.Fprintln(tw, "PHASE\tPOSITION\tTYPE\tSTATE\tDURATION\tNODE\tRUNS\tERROR")
	for _, r := range runs {
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\t%d\t%s\n", r.Phase, r.Position, r.Type, r.State, or(r.Duration, "-"), or(r.NodeID, "-"), r.Runs, or(r.Error, "-"))
	}
	return tw.Flush()
}

// follow redraws t's progress until it ends, riding out a failover: while
// no node answers it says so and keeps asking, for followOutage at most.
func (c *cli) follow(path string, t wire.Transfer) error {
	// One line a change; on a terminal, one line drawn over.
	prefix, suffix, terminal := "", "\n", false
	if f, ok := c.stdout.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			prefix, suffix, terminal = "\r\033[K", "", true
		}
	}
	var last string
	failingSince := time.Time{}
	for {
		line := fmt.Sprintf("transfer %d %-11s %s", t.ID, t.Status, progressText(t))
		if t.NextRetry != "" {
			line += fmt.Sprintf(" attempt %d of %d failed (%s), next at %s", t.Attempts, t.MaxAttempts, t.ErrorCode, t.NextRetry)
		}
		if line != last {
			fmt.Fprint(c.stdout, prefix+line+suffix)
			last = line
		}
		if finished(t) {
			if terminal {
				fmt.Fprintln(c.stdout)
			}
			if t.Status != "DONE" {
				return fmt.Errorf("transfer %d ended %s %s %s", t.ID, t.Status, t.ErrorCode, t.ErrorDetails)
			}
			return nil
		}
		time.Sleep(followPoll)
		var next wire.Transfer
		if _, err := c.callJSON("GET", path, nil, &next); err != nil {
			if failingSince.IsZero() {
				failingSince = time.Now()
				fmt.Fprintf(c.stderr, "\nno answer (%v); retrying\n", err)
			} else if time.Since(failingSince) > followOutage {
				return fmt.Errorf("no answer for %s: %w", followOutage, err)
			}
			continue
		}
		failingSince, t = time.Time{}, next
	}
}

// progressText is a bar, the bytes and the percentage of a transfer.
// nextRetryText says when a failed transfer tries again ("-" when it
// does not wait for a retry).
func nextRetryText(t wire.Transfer) string {
	next, err := time.Parse(time.RFC3339Nano, t.NextRetry)
	if err != nil {
		return or(t.NextRetry, "-")
	}
	in := time.Until(next).Round(time.Second)
	if in <= 0 {
		return next.Local().Format(time.RFC3339) + " (due)"
	}
	return fmt.Sprintf("%s (in %s, attempt %d of %d)", next.Local().Format(time.RFC3339), in, t.Attempts+1, t.MaxAttempts)
}

func progressText(t wire.Transfer) string {
	if t.Filesize <= 0 {
		return humanBytes(t.Progress) + " of an unknown size"
	}
	const width = 30
	done := min(width, int(width*t.Progress/t.Filesize))
	return fmt.Sprintf("[%s%s] %5.1f%% %s / %s", strings.Repeat("#", done), strings.Repeat("-", width-done),
		100*float64(t.Progress)/float64(t.Filesize), humanBytes(t.Progress), humanBytes(t.Filesize))
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func (c *cli) transfersAdd(fs *pflag.FlagSet) func([]string) error {
	flags := map[string]*string{}
	for _, f := range [][2]string{{"rule", "the rule (its paths say where the file goes)"}, {"partner", "the partner to send to or receive from"},
		{"account", "our account at the partner (remote-accounts)"}, {"file", "the file, relative to the rule's local-dir and path"},
		{"direction", "send or receive, when the rule exists both ways"}} {
		flags[f[0]] = fs.String(f[0], "", f[1])
	}
	return func([]string) error { return c.addTransfer(flags) }
}

func (c *cli) addTransfer(flags map[string]*string) error {
	body := map[string]any{}
	for f, v := range flags {
		if *v != "" {
			body[f] = *v
		}
	}
	var out struct {
		ID uint64 `json:"id"`
	}
	resp, err := c.callJSON("POST", "/api/transfers", body, &out)
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(resp.body)
		return nil
	}
	fmt.Fprintf(c.stdout, "transfer %d planned\n", out.ID)
	return nil
}

// historyList is `udmgctl history list`: the filters given are sent as
// the history endpoint's query parameters of the same names.
func (c *cli) historyList(fs *pflag.FlagSet) func([]string) error {
	limit := fs.Int("limit", 100, "at most this many, newest first")
	filters := map[string]*string{}
	for _, f := range [][2]string{{"status", "only transfers that ended in this status"}, {"rule", "only transfers of this rule"},
		{"partner", "only transfers with this partner"}, {"account", "only transfers of this account"},
		{"since", "only transfers from this `RFC3339` time on"}, {"until", "only transfers before this `RFC3339` time"}} {
		filters[f[0]] = fs.String(f[0], "", f[1])
	}
	return func([]string) error {
		q := url.Values{"limit": {strconv.Itoa(*limit)}}
		for name, v := range filters {
			if *v == "" {
				continue
			}
			if name == "since" || name == "until" {
				if _, err := time.Parse(time.RFC3339, *v); err != nil {
					return usage("--%s %q: want an RFC 3339 time, like 2026-12-01T14:00:00Z", name, *v)
				}
			}
			q.Set(name, *v)
		}
		return c.printList("/api/history?"+q.Encode(), "history",
			[]string{"id", "status", "isServer", "direction", "protocol", "rule", "agent", "account", "filesize", "duration", "start"})
	}
}
