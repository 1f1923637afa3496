package bench_test

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"

	ts "github.com/udmg/gateway/testsupport"
)

var (
	smallSessions = flag.Int("small-sessions", 16, "concurrent sessions of the small-file figure")
	smallFor      = flag.Duration("small-for", 15*time.Second, "how long each side of the small-file figure runs")
	smallCluster  = flag.Bool("small-cluster", false, "the small-file figure also runs the gateway side on a 3-node cluster")
	smallState    = flag.String("small-state", "", "large: after its rounds, the small-file figure seeds the issue's large state (testsupport.IssueState) and runs the gateway's rounds again")
)

// smallFile is the size of each file of the small-file figure.
const smallFile = 4 << 10

// smallFiles is the issue's small-file figure: -small-sessions SFTP
// sessions each uploading 4 KiB files one after the other for -small-for,
// through the gateway (durable: fsync, start and end records committed)
// and through OpenSSH's internal-sftp, with the same Go client (pkg/sftp,
// aes128-gcm), as it is and with the client asking it to fsync each file
// (fsync@openssh.com: durable, as the gateway's); then the disk's own
// limit, as many writers doing
// create+write+fsync+close. Rows give files/s and per-file p50/p99, and the
// load average of the machine around each side.
func (b *bench) smallFiles() []row {
	settleFreedInodes(b.t)
	signer, err := ssh.ParsePrivateKey(mustRead(b, b.key))
	if err != nil {
		b.t.Fatal(err)
	}
	sshd := ts.StartSSHDInternalSFTP(b.t)
	sshdSigner, err := ssh.ParsePrivateKey([]byte(sshd.ClientKey))
	if err != nil {
		b.t.Fatal(err)
	}
	var three *ts.Cluster
	if *smallCluster {
		three = b.clusterOf3()
	}
	var rows []row
	var gwRate, sshRate, syncRate, diskRate, threeRate []float64
	// The files stay until every round is over: on an ext4 without a
	// journal (this machine's) a new inode skips every inode freed in the
	// last 60 s (360 s while its table block is dirty), reading its table
	// block each time (recently_deleted), so removing a round's files
	// slowed whichever side came next, always the gateway.
	var made []string
	defer func() {
		for _, d := range made {
			if err := os.RemoveAll(d); err != nil {
				b.t.Error(err)
			}
		}
		freedAt(b.t)
	}()
	for r := range *rounds {
		dir := fmt.Sprintf("small%d", r)
		gwDir, sshDir := filepath.Join(b.home, dir), filepath.Join(b.sshdDir, dir)
		for _, d := range []string{gwDir, sshDir} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.t.Fatal(err)
			}
		}
		// The durable peer: the client has sshd fsync every file before
		// closing it, as the gateway does on its own.
		syncDir := sshDir + "-fsync"
		if err := os.MkdirAll(syncDir, 0o755); err != nil {
			b.t.Fatal(err)
		}
		var gw, g3, ssh, sshSync, disk smallResult
		var counts map[string]float64
		sides := []func(){
			func() {
				stopPerf, stopCount := b.perf(true, "small"), b.syscalls(r == 0)
				cpu := b.serverCPU(true)
				gw = b.smallRun(b.active.SFTPAddr(), login, signer, dir, gwDir, *smallSessions, *smallFor, false)
				gw.cpu = b.serverCPU(true) - cpu
				stopPerf()
				counts = stopCount()
			},
			func() {
				cpu := sshdCPU(b, sshd)
				ssh = b.smallRun(sshd.Addr, sshd.User, sshdSigner, sshDir, sshDir, *smallSessions, *smallFor, false)
				ssh.cpu = sshdCPU(b, sshd) - cpu
			},
			func() {
				cpu := sshdCPU(b, sshd)
				sshSync = b.smallRun(sshd.Addr, sshd.User, sshdSigner, syncDir, syncDir, *smallSessions, *smallFor, true)
				sshSync.cpu = sshdCPU(b, sshd) - cpu
			},
			func() { disk = b.smallDisk(filepath.Join(b.work, dir)) },
		}
		if three != nil {
			d := filepath.Join(three.Home, login, dir)
			if err := os.MkdirAll(d, 0o755); err != nil {
				b.t.Fatal(err)
			}
			made = append(made, d)
			sides = append(sides, func() {
				active := b.sftpActive(three)
				cpu := active.Usage().CPU
				g3 = b.smallRun(active.SFTPAddr(), login, signer, dir, d, *smallSessions, *smallFor, false)
				g3.cpu = active.Usage().CPU - cpu
			})
		}
		// Each round starts with another side: none always pays first
		// for what the machine did before.
		for i := range sides {
			sides[(i+r)%len(sides)]()
		}
		if counts != nil {
			rows = append(rows, syscallRow(counts, gw.files))
		}
		gwRate, sshRate, diskRate = append(gwRate, gw.rate), append(sshRate, ssh.rate), append(diskRate, disk.rate)
		syncRate = append(syncRate, sshSync.rate)
		rows = append(rows, gw.row(fmt.Sprintf("small files %dx4KiB %s, gateway, round %d", *smallSessions, *smallFor, r+1)))
		if three != nil {
			threeRate = append(threeRate, g3.rate)
			rows = append(rows, g3.row(fmt.Sprintf("small files %dx4KiB %s, 3-node gateway, round %d", *smallSessions, *smallFor, r+1)))
		}
		rows = append(rows,
			ssh.row(fmt.Sprintf("small files %dx4KiB %s, OpenSSH internal-sftp, round %d", *smallSessions, *smallFor, r+1)),
			sshSync.row(fmt.Sprintf("small files %dx4KiB %s, OpenSSH + fsync@openssh.com, round %d", *smallSessions, *smallFor, r+1)),
			disk.row(fmt.Sprintf("disk create+write+fsync, %d writers, round %d", *smallSessions, r+1)))
		made = append(made, gwDir, sshDir, syncDir, filepath.Join(b.work, dir))
	}
	if b.large("small-state", *smallState) {
		rows = append(rows, b.smallAtLarge(signer, gwRate, &made)...)
	}
	if three != nil {
		rows = append(rows, row{name: "small files ratio 3-node/single-node gateway", value: fmt.Sprintf("%.2fx", medianRatio(threeRate, gwRate)), note: "goal >= 0.7x"})
	}
	return append(rows,
		row{name: "small files ratio gateway/OpenSSH", value: fmt.Sprintf("%.2fx", medianRatio(gwRate, sshRate)), note: "goal >= 1.0x"},
		row{name: "small files ratio gateway/OpenSSH + fsync", value: fmt.Sprintf("%.2fx", medianRatio(gwRate, syncRate)), note: "durable on both sides"},
		row{name: "small files ratio gateway/disk limit", value: fmt.Sprintf("%.2fx", medianRatio(gwRate, diskRate)), note: "goal >= 0.7x"})
}

// large reads a -*-state flag: true for large, false for nothing.
func (b *bench) large(name, value string) bool {
	switch value {
	case "":
		return false
	case "large":
		return true
	}
	b.t.Fatalf("-%s=%q: want large or nothing", name, value)
	return false
}

// smallAtLarge seeds the issue's large state (10,000 accounts, 1,000
// partners, 10,000 live transfers) on the bench's node and runs the
// gateway's small-file rounds again: the goal is a rate within 10 % of
// the empty node's (empty: its rates).
func (b *bench) smallAtLarge(signer ssh.Signer, empty []float64, made *[]string) []row {
	ts.SeedState(b.t, b.c, ts.IssueState)
	var rows []row
	var rates []float64
	for r := range *rounds {
		dir := fmt.Sprintf("small-large%d", r)
		gwDir := filepath.Join(b.home, dir)
		if err := os.MkdirAll(gwDir, 0o755); err != nil {
			b.t.Fatal(err)
		}
		cpu := b.serverCPU(true)
		gw := b.smallRun(b.active.SFTPAddr(), login, signer, dir, gwDir, *smallSessions, *smallFor, false)
		gw.cpu = b.serverCPU(true) - cpu
		rates = append(rates, gw.rate)
		rows = append(rows, gw.row(fmt.Sprintf("small files %dx4KiB %s, gateway at the large state, round %d", *smallSessions, *smallFor, r+1)))
		*made = append(*made, gwDir)
	}
	return append(rows, row{name: "small files ratio large state/empty gateway", value: fmt.Sprintf("%.2fx", medianRatio(rates, empty)), note: "goal >= 0.9x"})
}

// smallResult is one side of the small-file figure.
type smallResult struct {
	files          int
	rate           float64 // files per second
	p50, p99       time.Duration
	loadBefore, ld string
	cpu            time.Duration // the server's (0: not measured)
}

func (s smallResult) row(name string) row {
	note := fmt.Sprintf("p50 %s, p99 %s; load %s -> %s", s.p50.Round(10*time.Microsecond), s.p99.Round(10*time.Microsecond), s.loadBefore, s.ld)
	if s.cpu > 0 {
		note += fmt.Sprintf("; server CPU %s/file", (s.cpu / time.Duration(max(s.files, 1))).Round(time.Microsecond))
	}
	return row{name: name, value: fmt.Sprintf("%d files", s.files), rate: fmt.Sprintf("%.0f files/s", s.rate), note: note}
}

// sshdCPU is what sshd and its finished sessions used so far.
func sshdCPU(b *bench, sshd *ts.SSHD) time.Duration {
	cpu, ok := sshd.CPU(10 * time.Second)
	if !ok {
		b.t.Fatal("an sshd session still runs after its client ended")
	}
	return cpu
}

// smallRun uploads small files over sessions sessions to addr for d, into
// remote (a path the server resolves to local), and checks that every
// acknowledged file is there in full; with fsync, the client has the
// server fsync each file before closing it.
func (b *bench) smallRun(addr, user string, key ssh.Signer, remote, local string, sessions int, d time.Duration, fsync bool) smallResult {
	conf := &ssh.ClientConfig{User: user, Auth: []ssh.AuthMethod{ssh.PublicKeys(key)},
		HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 10 * time.Second,
		Config: ssh.Config{Ciphers: []string{"aes128-gcm@openssh.com"}}}
	clients := make([]*sftp.Client, sessions)
	for i := range clients {
		sc, err := ssh.Dial("tcp", addr, conf)
		if err != nil {
			b.t.Fatalf("ssh %s@%s: %v", user, addr, err)
		}
		c, err := sftp.NewClient(sc)
		if err != nil {
			b.t.Fatalf("sftp %s@%s: %v", user, addr, err)
		}
		defer sc.Close()
		defer c.Close()
		clients[i] = c
	}
	data := make([]byte, smallFile)
	for i := range data {
		data[i] = byte(i)
	}
	res := smallResult{loadBefore: loadavg()}
	times := make([][]time.Duration, len(clients))
	errs := make([]error, len(clients))
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(d)
	for i, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(end); n++ {
				t0 := time.Now()
				f, err := c.Create(fmt.Sprintf("%s/s%02d-%06d.bin", remote, i, n))
				if err == nil {
					_, err = f.Write(data)
					if fsync && err == nil {
						err = f.Sync() // fsync@openssh.com
					}
					if cerr := f.Close(); err == nil {
						err = cerr
					}
				}
				if err != nil {
					errs[i] = err
					return
				}
				times[i] = append(times[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	res.ld = loadavg()
	var all []time.Duration
	for i, err := range errs {
		if err != nil {
			b.t.Fatalf("small files to %s, session %d: %v", addr, i, err)
		}
		all = append(all, times[i]...)
	}
	entries, err := os.ReadDir(local)
	if err != nil {
		b.t.Fatal(err)
	}
	found := 0
	for _, e := range entries {
		if info, err := e.Info(); err == nil && strings.HasSuffix(e.Name(), ".bin") && info.Size() == smallFile {
			found++
		}
	}
	if found != len(all) {
		b.t.Fatalf("%s: %d files acknowledged, %d complete in %s", addr, len(all), found, local)
	}
	slices.Sort(all)
	res.files, res.rate = len(all), float64(len(all))/wall.Seconds()
	res.p50, res.p99 = all[len(all)/2], all[(99*len(all)+99)/100-1]
	return res
}

// smallDisk is the disk's durable limit for small files: writers doing
// create+write+fsync+close in dir for -small-for.
func (b *bench) smallDisk(dir string) smallResult {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		b.t.Fatal(err)
	}
	data := make([]byte, smallFile)
	res := smallResult{loadBefore: loadavg()}
	times := make([][]time.Duration, *smallSessions)
	var wg sync.WaitGroup
	start := time.Now()
	end := start.Add(*smallFor)
	for i := range times {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; time.Now().Before(end); n++ {
				t0 := time.Now()
				f, err := os.Create(filepath.Join(dir, fmt.Sprintf("d%02d-%06d.bin", i, n)))
				if err != nil {
					b.t.Error(err)
					return
				}
				_, err = f.Write(data)
				if err == nil {
					err = f.Sync()
				}
				if cerr := f.Close(); err == nil {
					err = cerr
				}
				if err != nil {
					b.t.Error(err)
					return
				}
				times[i] = append(times[i], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	wall := time.Since(start)
	res.ld = loadavg()
	var all []time.Duration
	for _, t := range times {
		all = append(all, t...)
	}
	if len(all) == 0 {
		b.t.Fatal("the disk wrote no file")
	}
	slices.Sort(all)
	res.files, res.rate = len(all), float64(len(all))/wall.Seconds()
	res.p50, res.p99 = all[len(all)/2], all[(99*len(all)+99)/100-1]
	return res
}

// medianRatio is the median of a[i]/b[i] (rounds are interleaved).
func medianRatio(a, b []float64) float64 {
	r := make([]float64, len(a))
	for i := range a {
		r[i] = a[i] / b[i]
	}
	slices.Sort(r)
	if len(r)%2 == 1 {
		return r[len(r)/2]
	}
	return (r[len(r)/2-1] + r[len(r)/2]) / 2
}

// loadavg is the machine's 1-minute load average (the machine is shared).
func loadavg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return "?"
	}
	return strings.Fields(string(b))[0]
}

func mustRead(b *bench, path string) []byte {
	data, err := os.ReadFile(path)
	if err != nil {
		b.t.Fatal(err)
	}
	return data
}

// perfSyscalls are the storage syscalls counted on the gateway (with
// -perf) during its first small-file run.
var perfSyscalls = []string{"fsync", "fdatasync", "renameat", "renameat2", "openat", "pwrite64", "sync_file_range"}

// syscalls counts, with -perf and when on, the storage syscalls of the
// gateway (perf stat on its tracepoints) and its CPU time (task-clock,
// ms) until the returned func is called, which gives the counts (nil
// when not counting).
func (b *bench) syscalls(on bool) func() map[string]float64 {
	if *perfOut == "" || !on {
		return func() map[string]float64 { return nil }
	}
	out := filepath.Join(*perfOut, "small.syscalls.csv")
	args := []string{"stat", "-x", ",", "-o", out, "-p", fmt.Sprint(b.active.Pid())}
	for _, s := range perfSyscalls {
		args = append(args, "-e", "syscalls:sys_enter_"+s)
	}
	args = append(args, "-e", "task-clock")
	cmd := exec.Command("perf", args...)
	if err := cmd.Start(); err != nil {
		b.t.Logf("perf stat: %v", err)
		return func() map[string]float64 { return nil }
	}
	return func() map[string]float64 {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
		data, err := os.ReadFile(out)
		if err != nil {
			b.t.Logf("perf stat: %v", err)
			return nil
		}
		counts := map[string]float64{}
		for _, line := range strings.Split(string(data), "\n") {
			f := strings.Split(line, ",")
			if len(f) < 3 {
				continue
			}
			if n, err := strconv.ParseFloat(f[0], 64); err == nil {
				counts[strings.TrimPrefix(f[2], "syscalls:sys_enter_")] = n // task-clock: ms
			}
		}
		return counts
	}
}

// syscallRow shows the CPU time and the counted syscalls per file uploaded.
func syscallRow(counts map[string]float64, files int) row {
	parts := []string{fmt.Sprintf("CPU %.2f ms", counts["task-clock"]/float64(max(files, 1)))}
	for _, s := range perfSyscalls {
		parts = append(parts, fmt.Sprintf("%s %.2f", s, counts[s]/float64(max(files, 1))))
	}
	return row{name: "small files, gateway CPU and syscalls per file", value: fmt.Sprintf("%d files", files), note: strings.Join(parts, ", ")}
}

// clusterOf3 is a 3-node cluster serving bob (the bench's key), for
// -small-cluster. Its failure detection is relaxed (HeartbeatCheck 2 s):
// on a loaded two-core machine followers have called elections in the
// middle of a run at the default 1 s.
func (b *bench) clusterOf3() *ts.Cluster {
	c := ts.NewCluster(b.t, 3, append(envList(), "UDMG_CONTROLLER_HEARTBEATCHECK=2s")...)
	c.WaitOneActive(90*time.Second, "PASSIVE").Admin().
		Must(b.t, 201, "POST", "/api/servers/sftp/accounts", map[string]any{"login": login, "publicKeys": []string{b.pub}})
	return c
}

// sftpActive is c's ACTIVE node once its SFTP server answers (each round
// asks again: the lease may have moved).
func (b *bench) sftpActive(c *ts.Cluster) *ts.Proc {
	active := c.WaitOneActive(90*time.Second, "PASSIVE")
	if !ts.Eventually(10*time.Second, func() bool { return ts.Greeting(active.SFTPAddr(), time.Second, "SSH-2.0-Go") }) {
		b.t.Fatalf("SFTP server of the 3-node cluster does not answer on %s", active.SFTPAddr())
	}
	return active
}
