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
	"sync"
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
	for _, cmd := range (&cli{}).commands() {
		args := append(strings.Fields(cmd.path), "-h")
		code, out, errOut := offline(args...)
		if code != 0 || errOut != "" || !strings.HasPrefix(out, "Usage: udmgctl "+cmd.path) || !strings.Contains(out, upperFirst(cmd.summary)) {
			t.Errorf("udmgctl %s -h: exit %d, stderr %q, stdout:\n%s", cmd.path, code, errOut, out)
		}
	}
	dir := t.TempDir()
	if code, _, errOut := offline("license", "keygen", "-h", "--out", filepath.Join(dir, "k")); code != 0 || errOut != "" {
		t.Errorf("license keygen -h --out: exit %d, %q", code, errOut)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 0 {
		t.Errorf("-h made files: %v", entries)
	}
}

// TestUsageErrors: a bad command line exits 1 with one line on stderr
// that names the flag, the command or the argument, followed by that
// command's usage (its -h); at the root, by where help is.
func TestUsageErrors(t *testing.T) {
	for _, tc := range []struct {
		args  []string
		want  string
		usage []string // the command whose -h follows; none: the line is all
	}{
		{[]string{"transfers", "add", "--rulle", "r"}, "udmgctl: transfers add: unknown flag --rulle (its flags: --account, --direction, --file, --partner, --rule and the global ones)", []string{"transfers", "add"}},
		{[]string{"servers", "add", "s", "--port", "twenty"}, `udmgctl: servers add: --port "twenty": want a whole number`, []string{"servers", "add"}},
		{[]string{"servers", "add", "s", "--tls=maybe"}, `udmgctl: servers add: --tls "maybe": want true or false`, []string{"servers", "add"}},
		{[]string{"transfers", "list", "--status"}, "udmgctl: transfers list: --status needs a value (--status PLANNED|RUNNING|PAUSED|INTERRUPTED|ERROR|DONE|CANCELLED)", []string{"transfers", "list"}},
		{[]string{"history", "list", "--limit"}, "udmgctl: history list: --limit needs a value (--limit N)", []string{"history", "list"}},
		{[]string{"history", "list", "--since", "yesterday"}, `udmgctl: history list: --since "yesterday": want an RFC 3339 time, like 2026-12-01T14:00:00Z`, []string{"history", "list"}},
		{[]string{"secrets", "rotate", "--force"}, "udmgctl: secrets rotate: unknown flag --force (it takes only the global flags)", []string{"secrets", "rotate"}},
		{[]string{"transfers", "show"}, "udmgctl: transfers show: want ID, got 0 argument(s)", []string{"transfers", "show"}},
		{[]string{"nodes", "list", "extra"}, `udmgctl: nodes list: unexpected argument "extra"`, []string{"nodes", "list"}},
		{[]string{"--adress", "http://x", "nodes", "list"}, "udmgctl: unknown flag --adress (global flags: --addr, --user, --password, --token, --json) (see udmgctl help)", nil},
		{[]string{"-status", "done", "transfers", "list"}, "udmgctl: unknown flag --status (global flags: --addr, --user, --password, --token, --json) (see udmgctl help)", nil},
		{[]string{"transfers"}, "udmgctl: transfers: missing subcommand (list, show, add, pause, resume, cancel, retry)", []string{"transfers"}},
		{[]string{"transfers", "lsit"}, `udmgctl: transfers: unknown subcommand "lsit" (list, show, add, pause, resume, cancel, retry)`, []string{"transfers"}},
		{[]string{"help", "transfers", "lsit"}, `udmgctl: transfers: unknown subcommand "lsit" (list, show, add, pause, resume, cancel, retry)`, []string{"transfers"}},
		{[]string{"transfer", "list"}, `udmgctl: unknown command "transfer" (commands: nodes, cluster, users, servers, accounts, partners, remote-accounts, rules, keys, transfers, schedules, history, token, license, secrets, version, completion) (see udmgctl help)`, nil},
		{[]string{"help", "transfer"}, `udmgctl: unknown command "transfer" (commands: nodes, cluster, users, servers, accounts, partners, remote-accounts, rules, keys, transfers, schedules, history, token, license, secrets, version, completion) (see udmgctl help)`, nil},
		{[]string{"completion", "fish"}, `udmgctl: completion: unknown subcommand "fish" (bash, zsh)`, []string{"completion"}},
	} {
		want := tc.want + "\n"
		if tc.usage != nil {
			_, help, _ := offline(append(tc.usage, "-h")...)
			want += "\n" + help
		}
		code, out, errOut := offline(tc.args...)
		if code != 1 || out != "" || errOut != want {
			t.Errorf("udmgctl %s: exit %d, stdout %q\n got stderr:\n%s\nwant stderr:\n%s", strings.Join(tc.args, " "), code, out, errOut, want)
		}
	}
}

// TestGoFlagSyntax: flags may still be written as Go's flag package reads
// them (-name, as udmgctl took them before cobra), values being left
// alone (a password may start with a dash).
func TestGoFlagSyntax(t *testing.T) {
	valued := map[string]bool{"status": true, "password": true}
	for _, tc := range []struct{ in, want string }{
		{"-json transfers list -status done", "--json transfers list --status done"},
		{"users add bob -password -secret- -h", "users add bob --password -secret- -h"},
		{"--h --status=x -status=y -- -json", "-h --status=x --status=y -- -json"},
		{"license sign --nodes -1", "license sign --nodes -1"},
	} {
		if got := strings.Join(goFlagSyntax(strings.Fields(tc.in), valued), " "); got != tc.want {
			t.Errorf("goFlagSyntax(%s) = %s, want %s", tc.in, got, tc.want)
		}
	}
}

var built struct {
	once sync.Once
	bin  string
	err  error
}

// builtUdmgctl is udmgctl built from this checkout with its VCS stamp,
// once for the tests that run the binary.
func builtUdmgctl(t *testing.T) string {
	built.once.Do(func() {
		dir, err := os.MkdirTemp("", "udmgctl-test")
		if err != nil {
			built.err = err
			return
		}
		built.bin = filepath.Join(dir, "udmgctl")
		build := exec.Command("go", "build", "-buildvcs=true", "-o", built.bin, ".")
		build.Env = append(os.Environ(), "GIT_OPTIONAL_LOCKS=0") // no index.lock: others commit meanwhile
		if b, err := build.CombinedOutput(); err != nil {
			built.err = fmt.Errorf("go build: %v\n%s", err, b)
		}
	})
	if built.err != nil {
		t.Fatal(built.err)
	}
	return built.bin
}

func TestMain(m *testing.M) {
	flag.Parse()
	code := m.Run()
	if built.bin != "" {
		os.RemoveAll(filepath.Dir(built.bin))
	}
	os.Exit(code)
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
	if dir, common := gitOut(t, "--git-dir"), gitOut(t, "--git-common-dir"); dir != common {
		// cmd/go looks for a .git directory; a worktree's .git is a file.
		t.Skipf("SKIPPED the built binary's commit: a git worktree (%s), which go build does not stamp", dir)
	}
	b, err := exec.Command(builtUdmgctl(t), "version").Output()
	m := line.FindStringSubmatch(string(b))
	if err != nil || m == nil || m[2] == "devel" {
		t.Fatalf("built udmgctl version: %v, %q", err, b)
	}
	if err := exec.Command("git", "cat-file", "-e", m[2]+"^{commit}").Run(); err != nil {
		t.Errorf("udmgctl version names %s, not a commit of this repository", m[2])
	}
}

func gitOut(t *testing.T, arg string) string {
	b, err := exec.Command("git", "rev-parse", "--path-format=absolute", arg).Output()
	if err != nil {
		t.Fatalf("git rev-parse %s: %v", arg, err)
	}
	return strings.TrimSpace(string(b))
}

// TestCompletion: the bash and zsh scripts (golden files: cobra's, for
// udmgctl), what udmgctl's __complete answers them (subcommands, flags,
// the words of enumerated flags and arguments), and bash running the
// script against the built binary.
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
		{[]string{""}, "nodes cluster users servers accounts partners remote-accounts rules keys transfers schedules history token license secrets version completion help"},
		{[]string{"tr"}, "transfers"},
		{[]string{"--"}, "--addr --json --password --token --user"},
		{[]string{"transfers", ""}, "list show add pause resume cancel retry"},
		{[]string{"--addr", "http://h:8080", "transfers", "a"}, "add"},
		{[]string{"transfers", "add", "--"}, "--addr --json --password --token --user --account --direction --file --partner --rule"},
		{[]string{"transfers", "add", "--rule", "r", "--d"}, "--direction"},
		{[]string{"transfers", "list", "--status", ""}, "PLANNED RUNNING PAUSED INTERRUPTED ERROR DONE CANCELLED"},
		{[]string{"history", "list", "--status", "D"}, "DONE"},
		{[]string{"history", "list", "--r"}, "--rule"},
		{[]string{"servers", "add", "s", "--protocol", ""}, "sftp ftp"},
		{[]string{"rules", "add", "r", "--direction", "r"}, "receive"},
		{[]string{"rules", "delete", "r", "s"}, "send"},
		{[]string{"users", "add", "bob", "--"}, "--addr --json --token --user --password --perms"},
		{[]string{"completion", ""}, "bash zsh"},
		{[]string{"version", "--j"}, "--json"},
	}
	for _, tc := range cases {
		code, out, errOut := offline(append([]string{"__completeNoDesc"}, tc.words...)...)
		var got []string
		for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
			if !strings.HasPrefix(l, ":") {
				got = append(got, l)
			}
		}
		if code != 0 || strings.Join(got, " ") != tc.want {
			t.Errorf("udmgctl __complete %s: exit %d, %q (stderr %q), want %q", strings.Join(tc.words, " "), code, out, errOut, tc.want)
		}
	}

	// bash, as readline would call it (COMP_TYPE 37: the candidates
	// without their descriptions); _get_comp_words_by_ref, which the
	// bash-completion package provides, reduced to what the script uses.
	bin := builtUdmgctl(t)
	for _, tc := range cases {
		quoted := []string{"udmgctl"}
		for _, w := range tc.words {
			quoted = append(quoted, fmt.Sprintf("%q", w))
		}
		script := fmt.Sprintf(`compopt() { :; }
_get_comp_words_by_ref() { cur=${COMP_WORDS[COMP_CWORD]}; prev=${COMP_WORDS[COMP_CWORD-1]}; words=("${COMP_WORDS[@]}"); cword=$COMP_CWORD; }
source %s
COMP_WORDS=(%s)
COMP_CWORD=%d
COMP_LINE="${COMP_WORDS[*]}"
COMP_POINT=${#COMP_LINE}
COMP_TYPE=37
__start_udmgctl
echo "${COMPREPLY[*]}"
`, scripts["bash"], strings.Join(quoted, " "), len(tc.words))
		cmd := exec.Command("bash", "--norc", "--noprofile", "-c", script)
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
			t.Errorf("bash: udmgctl %s<TAB>: %v %q, want %q", strings.Join(tc.words, " "), err, out, tc.want)
		}
	}
	if _, err := exec.LookPath("zsh"); err != nil {
		t.Skip("SKIPPED the zsh completion run: no zsh on PATH (make deps installs it); its golden file was checked")
	}
	// zsh: the completion builtins replaced by functions that print what
	// they are given.
	for _, tc := range cases {
		quoted := []string{"udmgctl"}
		for _, w := range tc.words {
			quoted = append(quoted, fmt.Sprintf("%q", w))
		}
		script := fmt.Sprintf(`compdef() { :; }
compadd() { :; }
_describe() { while [[ $1 == -* ]]; do shift; done; shift; local a; local -a names; for a in ${(P)1}; do names+=(${a%%%%:*}); done; print -r -- $names; }
_arguments() { print -r -- _files; }
source %s
words=(%s)
CURRENT=%d
_udmgctl
`, scripts["zsh"], strings.Join(quoted, " "), len(tc.words)+1)
		cmd := exec.Command("zsh", "-f", "-c", script)
		cmd.Env = append(os.Environ(), "PATH="+filepath.Dir(bin)+string(os.PathListSeparator)+os.Getenv("PATH"))
		out, err := cmd.CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != tc.want {
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
	mustRun(t, addr, "transfers", "list", "-status", "Done") // Go flag syntax, as before cobra
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
