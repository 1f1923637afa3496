package testsupport_test

import (
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"testing"
	"time"

	ts "github.com/udmg/gateway/testsupport"
)

// TestVsftpd uploads and downloads a file through StartVsftpd's server
// with curl, which costs it CPU time, then checks that its cleanup stopped it and deleted its user.
func TestVsftpd(t *testing.T) {
	if _, err := exec.LookPath("curl"); err != nil {
		t.Skip("curl not installed (make deps installs it)")
	}
	var v *ts.Vsftpd
	t.Run("serve", func(t *testing.T) {
		v = ts.StartVsftpd(t)
		src := filepath.Join(t.TempDir(), "src.bin")
		sum := ts.WriteRandomFile(t, src, 64<<20)
		stop := v.SampleCPU()
		if out, err := exec.Command("curl", "-sS", "-T", src, v.URL("up.bin")).CombinedOutput(); err != nil {
			t.Fatalf("curl upload: %v\n%s", err, out)
		}
		if got := ts.FileSHA256(t, filepath.Join(v.Home, "up.bin")); got != sum {
			t.Fatal("the uploaded file differs from the source")
		}
		down := filepath.Join(t.TempDir(), "down.bin")
		if out, err := exec.Command("curl", "-sS", "-o", down, v.URL("up.bin")).CombinedOutput(); err != nil {
			t.Fatalf("curl download: %v\n%s", err, out)
		}
		if got := ts.FileSHA256(t, down); got != sum {
			t.Fatal("the downloaded file differs from the source")
		}
		if cpu := stop(); cpu <= 0 {
			t.Errorf("vsftpd used %s of CPU for a 64 MiB upload and download", cpu)
		}
	})
	if v == nil {
		return
	}
	if c, err := net.DialTimeout("tcp", v.Addr, time.Second); err == nil {
		c.Close()
		t.Errorf("vsftpd still answers on %s after cleanup", v.Addr)
	}
	if _, err := user.Lookup(v.User); err == nil {
		t.Errorf("user %s still exists after cleanup", v.User)
	}
	if _, err := os.Stat(v.Home); err == nil {
		t.Errorf("home %s still exists after cleanup", v.Home)
	}
}
