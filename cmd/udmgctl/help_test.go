package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

var update = flag.Bool("update", false, "rewrite testdata/*.golden from the current output")

// golden compares got with testdata/name, or writes it with -update.
func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (write it with: go test ./cmd/udmgctl -run 'TestHelp|TestCompletion' -update)", err)
	}
	if got != string(want) {
		t.Errorf("output differs from %s (if the change is meant, regenerate with: go test ./cmd/udmgctl -run 'TestHelp|TestCompletion' -update)\n got:\n%s\nwant:\n%s", path, got, want)
	}
}

// offline runs udmgctl with no server and no credentials.
func offline(args ...string) (int, string, string) { return udmgctl("http://127.0.0.1:1", args...) }

// TestHelp: udmgctl help, a group's and a command's help, the same from
// -h, --help and "help COMMAND", on stdout with exit 0 (golden files).
func TestHelp(t *testing.T) {
	for _, tc := range []struct {
		golden string
		args   [][]string // each prints the same
	}{
		{"help.golden", [][]string{{"help"}, {"-h"}, {"--help"}, {}}},
		{"help-transfers.golden", [][]string{{"transfers", "-h"}, {"help", "transfers"}, {"transfers", "--help"}}},
		{"help-transfers-add.golden", [][]string{{"transfers", "add", "-h"}, {"help", "transfers", "add"}, {"transfers", "add", "--rule", "r", "--help"}, {"--json", "transfers", "add", "-help"}}},
		{"help-users-add.golden", [][]string{{"users", "add", "-h"}}},
		{"help-servers-add.golden", [][]string{{"servers", "add", "-h"}}},
		{"help-version.golden", [][]string{{"version", "-h"}}},
	} {
		var first string
		for i, args := range tc.args {
			code, out, errOut := offline(args...)
			if code != 0 || errOut != "" {
				t.Errorf("udmgctl %s: exit %d, stderr %q", strings.Join(args, " "), code, errOut)
			}
			if i == 0 {
				first = out
				golden(t, tc.golden, out)
			} else if out != first {
				t.Errorf("udmgctl %s prints other help than udmgctl %s:\n%s", strings.Join(args, " "), strings.Join(tc.args[0], " "), out)
			}
		}
	}

	// Every command of the table has its own help, and -h does nothing
	// else (license keygen -h makes no key, nothing is asked of a server).
	dir := t.TempDir()
	c := &cli{}
	for _, cmd := range c.commands() {
		args := append(strings.Fields(cmd.path), "-h", "--out", filepath.Join(dir, "k"))
		code, out, errOut := offline(args...)
		if code != 0 || errOut != "" || !strings.HasPrefix(out, "Usage: udmgctl "+cmd.path) || !strings.Contains(out, upperFirst(cmd.summary)) {
			t.Errorf("udmgctl %s -h: exit %d, stderr %q, stdout:\n%s", cmd.path, code, errOut, out)
		}
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("-h made files: %v", entries)
	}
}

// TestUsageErrors: a bad command line exits 1 with one line on stderr
// that names the flag, the command or the argument, and where help is.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"transfers", "add", "--rulle", "r"}, "udmgctl: transfers add: unknown flag --rulle (its flags: --account, --direction, --file, --partner, --rule and the global ones) (see udmgctl transfers add -h)"},
		{[]string{"servers", "add", "s", "--port", "twenty"}, `udmgctl: servers add: --port "twenty": want a whole number (see udmgctl servers add -h)`},
		{[]string{"servers", "add", "s", "--tls=maybe"}, `udmgctl: servers add: --tls "maybe": want true or false (see udmgctl servers add -h)`},
		{[]string{"transfers", "list", "--status"}, "udmgctl: transfers list: --status needs a value (--status PLANNED|RUNNING|PAUSED|INTERRUPTED|ERROR|DONE|CANCELLED) (see udmgctl transfers list -h)"},
		{[]string{"history", "list", "--limit"}, "udmgctl: history list: --limit needs a value (--limit N) (see udmgctl history list -h)"},
		{[]string{"secrets", "rotate", "--force"}, "udmgctl: secrets rotate: unknown flag --force (it takes only the global flags) (see udmgctl secrets rotate -h)"},
		{[]string{"transfers", "show"}, "udmgctl: transfers show: want ID, got 0 argument(s) (see udmgctl transfers show -h)"},
		{[]string{"nodes", "list", "extra"}, `udmgctl: nodes list: unexpected argument "extra" (see udmgctl nodes list -h)`},
		{[]string{"--adress", "http://x", "nodes", "list"}, "udmgctl: unknown flag --adress (global flags: --addr, --user, --password, --token, --json) (see udmgctl help)"},
		{[]string{"transfers"}, "udmgctl: transfers: missing subcommand (list, show, add, pause, resume, cancel, retry; see udmgctl transfers -h)"},
		{[]string{"transfers", "lsit"}, `udmgctl: transfers: unknown subcommand "lsit" (list, show, add, pause, resume, cancel, retry; see udmgctl transfers -h)`},
		{[]string{"transfer", "list"}, `udmgctl: unknown command "transfer" (commands: nodes, cluster, users, servers, accounts, partners, remote-accounts, rules, keys, transfers, schedules, history, token, license, secrets, version, completion; see udmgctl help)`},
		{[]string{"completion", "fish"}, `udmgctl: completion: unknown subcommand "fish" (bash, zsh; see udmgctl completion -h)`},
	} {
		code, out, errOut := offline(tc.args...)
		if code != 1 || out != "" || errOut != tc.want+"\n" {
			t.Errorf("udmgctl %s: exit %d, stdout %q\n got stderr %q\nwant stderr %q", strings.Join(tc.args, " "), code, out, errOut, tc.want+"\n")
		}
	}
}

// TestVersion: `udmgctl version` prints the one line udmg-server -version
// does; a binary built in this checkout names a commit of it.
func TestVersion(t *testing.T) {
	line := regexp.MustCompile(`^udmgctl version (\S+) commit ([0-9a-f]{40}|devel)( \(modified\))? (go\S+)\n$`)
	code, out, _ := offline("version")
	if m := line.FindStringSubmatch(out); code != 0 || m == nil || m[4] != runtime.Version() {
		t.Fatalf("udmgctl version (in process): exit %d, %q", code, out)
	}
	var v struct {
		Version, Commit, Go string
		Modified            bool
	}
	if code, out, _ := offline("version", "--json"); code != 0 || json.Unmarshal([]byte(out), &v) != nil || v.Go != runtime.Version() || v.Commit == "" {
		t.Fatalf("udmgctl version --json: exit %d, %q", code, out)
	}
	if err := exec.Command("git", "rev-parse", "--is-inside-work-tree").Run(); err != nil {
		t.Skipf("SKIPPED the built binary's commit: not in a git checkout or no git (%v)", err)
	}
	bin := filepath.Join(t.TempDir(), "udmgctl")
	build := exec.Command("go", "build", "-buildvcs=true", "-o", bin, ".")
	build.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0") // no index.lock: others commit meanwhile
	if b, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, b)
	}
	b, err := exec.Command(bin, "version").Output()
	m := line.FindStringSubmatch(string(b))
	if err != nil || m == nil || m[2] == "devel" {
		t.Fatalf("built udmgctl version: %v, %q", err, b)
	}
	if err := exec.Command("git", "cat-file", "-e", m[2]+"^{commit}").Run(); err != nil {
		t.Errorf("udmgctl version names %s, not a commit of this repository", m[2])
	}
}

// TestCompletion: the bash and zsh scripts (golden files), and what they
// complete when the shells run them.
func TestCompletion(t *testing.T) {
	scripts := map[string]string{}
	for _, shell := range []string{"bash", "zsh"} {
		code, out, errOut := offline("completion", shell)
		if code != 0 || errOut != "" {
			t.Fatalf("completion %s: exit %d, %q", shell, code, errOut)
		}
		golden(t, "completion."+shell+".golden", out)
		scripts[shell] = filepath.Join(t.TempDir(), "udmgctl."+shell)
		if err := os.WriteFile(scripts[shell], []byte(out), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cases := []struct {
		words []string // the command line, the last word being completed
		want  string   // the candidates, space-separated
	}{
		{[]string{""}, "nodes cluster users servers accounts partners remote-accounts rules keys transfers schedules history token license secrets version completion"},
		{[]string{"tr"}, "transfers"},
		{[]string{"--"}, "--addr --user --password --token --json"},
		{[]string{"transfers", ""}, "list show add pause resume cancel retry"},
		{[]string{"--addr", "http://h:8080", "transfers", "a"}, "add"},
		{[]string{"transfers", "add", "--"}, "--account --direction --file --partner --rule --addr --json --password --token --user"},
		{[]string{"transfers", "add", "--rule", "r", "--d"}, "--direction"},
		{[]string{"transfers", "list", "--status", ""}, "PLANNED RUNNING PAUSED INTERRUPTED ERROR DONE CANCELLED"},
		{[]string{"history", "list", "--status", "D"}, "DONE"},
		{[]string{"servers", "add", "s", "--protocol", ""}, "sftp ftp"},
		{[]string{"rules", "add", "r", "--direction", "r"}, "receive"},
		{[]string{"completion", ""}, "bash zsh"},
		{[]string{"version", "--j"}, "--json"},
	}
	for _, tc := range cases {
		line := strings.Join(tc.words, " ")
		// bash: COMP_WORDS and COMP_CWORD, as readline would set them.
		quoted := []string{"udmgctl"}
		for _, w := range tc.words {
			quoted = append(quoted, fmt.Sprintf("%q", w))
		}
		script := fmt.Sprintf("source %s\nCOMP_WORDS=(%s)\nCOMP_CWORD=%d\n_udmgctl\necho \"${COMPREPLY[*]}\"\n", scripts["bash"], strings.Join(quoted, " "), len(tc.words))
		out, err := exec.Command("bash", "--norc", "--noprofile", "-c", script).CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("bash: udmgctl %s<TAB>: %v %q, want %q", line, err, out, tc.want)
		}
	}
	if _, err := exec.LookPath("zsh"); err != nil {
		t.Skip("SKIPPED the zsh completion run: no zsh on PATH (make deps installs it); its golden file was checked")
	}
	// zsh: the completion builtins replaced by functions that print what
	// they are given; zsh itself filters by the word's prefix.
	for _, tc := range cases {
		quoted := []string{"udmgctl"}
		for _, w := range tc.words {
			quoted = append(quoted, fmt.Sprintf("%q", w))
		}
		script := fmt.Sprintf(`compdef() { :; }
compadd() { [[ $1 == -- ]] && shift; print -r -- "$@"; }
_describe() { [[ $1 == -t ]] && shift 2; shift; local a; local -a names; for a in ${(P)1}; do names+=(${a%%%%:*}); done; print -r -- $names; }
_files() { print -r -- _files; }
source %s
words=(%s)
CURRENT=%d
_udmgctl
`, scripts["zsh"], strings.Join(quoted, " "), len(tc.words)+1)
		out, err := exec.Command("zsh", "-f", "-c", script).CombinedOutput()
		cur := tc.words[len(tc.words)-1]
		var got []string
		for _, w := range strings.Fields(string(out)) {
			if strings.HasPrefix(w, cur) {
				got = append(got, w)
			}
		}
		if err != nil || strings.Join(got, " ") != tc.want {
			t.Errorf("zsh: udmgctl %s<TAB>: %v %q, want %q", strings.Join(tc.words, " "), err, out, tc.want)
		}
	}
}

// TestEnumsAnyCase: enumerated values in any case reach a real node in the
// API's case; a value that is none of them is refused by the API, naming
// the field.
func TestEnumsAnyCase(t *testing.T) {
	if testing.Short() {
		t.Skip("runs a real node")
	}
	c := ts.NewCluster(t, 1)
	addr := c.WaitOneActive(30*time.Second, "").AdminURL()
	mustRun(t, addr, "transfers", "list", "--status", "done")
	mustRun(t, addr, "history", "list", "--status", "Cancelled")
	if code, _, errOut := udmgctl(addr, "transfers", "list", "--status", "finished"); code != 1 || !strings.Contains(errOut, `status: "FINISHED" is not one of`) {
		t.Errorf("--status finished: exit %d, %q", code, errOut)
	}
	mustRun(t, addr, "servers", "add", "loud", "--protocol", "SFTP", "--port", "2299")
	mustRun(t, addr, "rules", "add", "in", "--direction", "Receive", "--path", "/in")
	var servers struct {
		Servers []struct{ Name, Protocol string }
	}
	if err := json.Unmarshal([]byte(mustRun(t, addr, "--json", "servers", "list")), &servers); err != nil {
		t.Fatal(err)
	}
	found := false
	for _, s := range servers.Servers {
		found = found || s.Name == "loud" && s.Protocol == "sftp"
	}
	if !found {
		t.Errorf("servers add --protocol SFTP: %+v, want server loud with protocol sftp", servers.Servers)
	}
	if out := mustRun(t, addr, "rules", "list"); !regexp.MustCompile(`(?m)^in\s+receive\s`).MatchString(out) {
		t.Errorf("rules add --direction Receive:\n%s", out)
	}
	mustRun(t, addr, "rules", "delete", "in", "RECEIVE")
	if out := mustRun(t, addr, "rules", "list"); regexp.MustCompile(`(?m)^in\s`).MatchString(out) {
		t.Errorf("rules delete in RECEIVE left the rule:\n%s", out)
	}
}
