package tasks

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"flag"
	"fmt"
	"io"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/ProtonMail/go-crypto/openpgp"
)

var crashTrials = flag.Int("crash-trials", 20, "TestCrashAnywhere: kill -9 trials")

// crashChain is a receive rule's post-tasks as the issue describes them:
// refuse by name, checksum, archive the original, encrypt for the partner,
// move the encrypted file to the outbox.
var crashChain = []Task{
	{Type: "CHECK", Args: map[string]any{"namePattern": "*.bin"}},
	{Type: "CHECKSUM"},
	{Type: "ARCHIVE", Args: map[string]any{"path": "archive/#ORIGINALFILENAME#.tar.gz"}},
	{Type: "ENCRYPT", Args: map[string]any{"key": "partner"}},
	{Type: "MOVE", Args: map[string]any{"path": "outbox"}},
}

// journal stands in for the Raft log: one fsynced line per finished task
// ("index path"); a torn last line counts as not written.
func readJournal(path string) (done int, file string) {
	file = "in/data.bin"
	b, _ := os.ReadFile(path)
	for _, line := range strings.Split(string(b), "\n") {
		i, p, ok := strings.Cut(line, " ")
		n, err := strconv.Atoi(i)
		if !ok || err != nil || n != done || !strings.HasSuffix(p, ".") {
			break
		}
		done, file = n+1, strings.TrimSuffix(p, ".")
	}
	return done, file
}

// resume runs the chain from its first unfinished task, as the runner does
// after a failover, recording each end.
// announce (the child's stdout) hears "start i" before task i.
func resume(ctx context.Context, dir string, env Env, announce io.Writer) error {
	jpath := filepath.Join(dir, "journal")
	done, file := readJournal(jpath)
	j, err := os.OpenFile(jpath, os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o600)
	if err != nil {
		return err
	}
	defer j.Close()
	for i := done; i < len(crashChain); i++ {
		if announce != nil {
			fmt.Fprintf(announce, "start %d\n", i)
		}
		f := facts("in/data.bin")
		f.Path = file
		f.TaskKey = "post/" + strconv.Itoa(i)
		r, err := Run(ctx, crashChain[i], f, env)
		if err != nil {
			return fmt.Errorf("task %d: %w", i, err)
		}
		if r.Path != "" {
			file = r.Path
		}
		if _, err := fmt.Fprintf(j, "%d %s.\n", i, file); err != nil {
			return err
		}
		if err := j.Sync(); err != nil {
			return err
		}
	}
	if announce != nil {
		fmt.Fprintf(announce, "start %d\n", len(crashChain))
	}
	return nil
}

// TestCrashAnywhere kills -9 a process running the chain at a random
// instant, then resumes the chain at its first unfinished task in this
// process, and checks it ended as an uninterrupted chain does: the
// encrypted file in the outbox opens to the original, the archive holds
// the original, the sidecar is right, the original is intact and no
// temporary file is left.
func TestCrashAnywhere(t *testing.T) {
	if os.Getenv("TASKS_CRASH_HOME") != "" {
		t.Skip("the crashing child")
	}
	e, pub := goKey(t, "partner@example.net")
	original := make([]byte, 128<<10)
	rand.Read(original)

	setup := func(t *testing.T) *home {
		h := newHome(t)
		h.keys["partner"] = pub
		h.put("in/data.bin", string(original))
		h.put("partner.asc", pub)
		return h
	}
	// A child not killed: the chain ends right, and how long each task
	// takes in a child tells where kills can land.
	h := setup(t)
	child := func(h *home) (*exec.Cmd, *bufio.Reader) {
		cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
		cmd.Env = append(os.Environ(), "TASKS_CRASH_HOME="+h.dir)
		out, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		return cmd, bufio.NewReader(out)
	}
	// await reads the child's lines up to "start i" (i = len: the end).
	await := func(r *bufio.Reader, i int) {
		t.Helper()
		for {
			line, err := r.ReadString('\n')
			if line == fmt.Sprintf("start %d\n", i) {
				return
			}
			if err != nil {
				t.Fatalf("child ended before task %d: %v", i, err)
			}
		}
	}
	cmd, out := child(h)
	took := make([]time.Duration, len(crashChain))
	await(out, 0)
	last := time.Now()
	for i := range crashChain {
		await(out, i+1)
		took[i], last = time.Since(last), time.Now()
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("child: %v", err)
	}
	checkChainEnd(t, h, e, original)

	// Each trial kills the child at a random instant of a random task.
	atTask := make([]int, len(crashChain)+1)
	for trial := range *crashTrials {
		h := setup(t)
		cmd, out := child(h)
		k := randN(len(crashChain))
		await(out, k)
		time.Sleep(time.Duration(randN(int(took[k]) + 1))) // the crash point, not a synchronisation
		_ = cmd.Process.Kill()
		_ = cmd.Wait()

		done, _ := readJournal(filepath.Join(h.dir, "journal"))
		atTask[done]++
		if err := resume(context.Background(), h.dir, h.env, nil); err != nil {
			t.Fatalf("trial %d (killed after %d tasks): resume: %v", trial, done, err)
		}
		checkChainEnd(t, h, e, original)
	}
	var b strings.Builder
	for i, n := range atTask {
		name := "finished"
		if i < len(crashChain) {
			name = "in " + crashChain[i].Type
		}
		fmt.Fprintf(&b, " %s: %d;", name, n)
	}
	t.Logf("%d kill -9 trials (tasks took %v in a child), killed%s", *crashTrials, took, b.String())
}

// TestCrashChild is the process TestCrashAnywhere kills.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv("TASKS_CRASH_HOME")
	if dir == "" {
		t.Skip("run by TestCrashAnywhere")
	}
	pub, err := os.ReadFile(filepath.Join(dir, "partner.asc"))
	if err != nil {
		t.Fatal(err)
	}
	env := Env{Home: dir, Keys: func(string) (string, error) { return string(pub), nil }}
	if err := resume(context.Background(), dir, env, os.Stdout); err != nil {
		t.Fatal(err)
	}
}

func checkChainEnd(t *testing.T, h *home, key *openpgp.Entity, original []byte) {
	t.Helper()
	h.noTemps()
	if h.exists("in/data.bin.pgp") || h.read("in/data.bin") != string(original) {
		t.Error("the encrypted file is still in in/, or the original changed")
	}
	outbox, _ := os.ReadDir(filepath.Join(h.dir, "outbox"))
	if len(outbox) != 1 || outbox[0].Name() != "data.bin.pgp" {
		t.Fatalf("outbox holds %v, want data.bin.pgp alone", outbox)
	}
	md, err := openpgp.ReadMessage(strings.NewReader(h.read("outbox/data.bin.pgp")), openpgp.EntityList{key}, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	plain, err := io.ReadAll(md.UnverifiedBody)
	if err != nil || !bytes.Equal(plain, original) {
		t.Fatalf("the encrypted file opens to %d bytes (%v), want the original", len(plain), err)
	}
	if sum := sha256.Sum256(original); !strings.HasPrefix(h.read("in/data.bin.sha256"), hex.EncodeToString(sum[:])) {
		t.Error("the sidecar is wrong")
	}
	if err := os.RemoveAll(filepath.Join(h.dir, "restored")); err != nil {
		t.Fatal(err)
	}
	h.run("EXTRACT", map[string]any{"path": "restored"}, facts("archive/data.bin.tar.gz"))
	if h.read("restored/data.bin") != string(original) {
		t.Error("the archive does not hold the original")
	}
}

func randN(n int) int {
	v, err := rand.Int(rand.Reader, big.NewInt(int64(n)))
	if err != nil {
		panic(err)
	}
	return int(v.Int64())
}
