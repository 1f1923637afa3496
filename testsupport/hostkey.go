package testsupport

import (
	"net"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// HostKey is the SSH host key an SFTP server at addr presents, in
// authorized_keys form: the handshake reaches it before authentication
// fails, so no account is needed.
func HostKey(t testing.TB, addr string) string {
	t.Helper()
	var got string
	cfg := &ssh.ClientConfig{User: "nobody", Auth: []ssh.AuthMethod{ssh.Password("x")}, Timeout: 5 * time.Second,
		HostKeyCallback: func(_ string, _ net.Addr, key ssh.PublicKey) error {
			got = string(ssh.MarshalAuthorizedKey(key))
			return nil
		}}
	if c, err := ssh.Dial("tcp", addr, cfg); err == nil {
		c.Close()
	}
	if got == "" {
		t.Fatalf("no host key from %s", addr)
	}
	return got
}
