package cluster

import (
	"bytes"
	"crypto/x509"
	"encoding/pem"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// Every node must derive the byte-identical CA from one token, and another
// token must give another CA.
func TestTokenCADeterministic(t *testing.T) {
	a1, _, err := tokenCA("token-a")
	if err != nil {
		t.Fatal(err)
	}
	a2, _, _ := tokenCA("token-a")
	b, _, _ := tokenCA("token-b")
	if !bytes.Equal(a1.Raw, a2.Raw) {
		t.Fatal("one token gave two different CA certificates")
	}
	if bytes.Equal(a1.Raw, b.Raw) || bytes.Equal(a1.RawSubjectPublicKeyInfo, b.RawSubjectPublicKeyInfo) {
		t.Fatal("two tokens gave the same CA")
	}
}

// A node's certificate verifies against its token's CA, names the node and
// the cluster, and does not verify against another token's CA; with two
// tokens the first signs and both are trusted, and gossip has both keys.
func TestTokenIdentity(t *testing.T) {
	id, err := LoadIdentity(IdentityConfig{NodeID: "n1:8080-mft-0", Name: "mft", Tokens: []string{"new", "old"}})
	if err != nil {
		t.Fatal(err)
	}
	leaf := id.Cert.Leaf
	if !certNames(leaf, "n1:8080-mft-0") || certNames(leaf, "n2:8080-mft-0") {
		t.Errorf("certificate names: CN %q URIs %v", leaf.Subject.CommonName, leaf.URIs)
	}
	opts := x509.VerifyOptions{Roots: id.Roots, DNSName: "mft", KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if _, err := leaf.Verify(opts); err != nil {
		t.Errorf("node certificate does not verify against its cluster: %v", err)
	}
	newCA, _, _ := tokenCA("new")
	if !bytes.Equal(leaf.RawIssuer, newCA.RawSubject) {
		t.Error("the certificate is not from the first token's CA")
	}
	other, _ := LoadIdentity(IdentityConfig{NodeID: "x", Name: "mft", Tokens: []string{"other"}})
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: other.Roots, DNSName: "mft"}); err == nil {
		t.Error("node certificate verifies against another token's CA")
	}
	oldOnly, _ := LoadIdentity(IdentityConfig{NodeID: "n2", Name: "mft", Tokens: []string{"old"}})
	if _, err := oldOnly.Cert.Leaf.Verify(opts); err != nil {
		t.Errorf("a node on the old token is not trusted during rotation: %v", err)
	}
	if len(id.GossipKeys) != 2 || !bytes.Equal(id.GossipKeys[0], DeriveKey("new", "gossip")) {
		t.Errorf("gossip keys: %d, first is not the new token's", len(id.GossipKeys))
	}
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: id.Roots, DNSName: "other-cluster"}); err == nil {
		t.Error("certificate verifies for another cluster name")
	}
}

// Operator files: a certificate of the TLSCA naming the node is accepted;
// one that does not name the node ID is refused, naming the file.
func TestFileIdentity(t *testing.T) {
	dir := t.TempDir()
	ca, caKey, _ := tokenCA("operator")
	write := func(name string, typ string, der []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
			t.Fatal(err)
		}
		return p
	}
	caFile := write("ca.crt", "CERTIFICATE", ca.Raw)
	cert, err := nodeCert(ca, caKey, "n1", "mft")
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(cert.PrivateKey)
	certFile, keyFile := write("n1.crt", "CERTIFICATE", cert.Certificate[0]), write("n1.key", "PRIVATE KEY", keyDER)
	gossip := [][]byte{bytes.Repeat([]byte{1}, 32)}
	if _, err := LoadIdentity(IdentityConfig{NodeID: "n1", Name: "mft", CertFile: certFile, KeyFile: keyFile, CAFile: caFile, GossipKeys: gossip}); err != nil {
		t.Fatalf("operator files refused: %v", err)
	}
	_, err = LoadIdentity(IdentityConfig{NodeID: "n2", Name: "mft", CertFile: certFile, KeyFile: keyFile, CAFile: caFile, GossipKeys: gossip})
	if err == nil || !strings.Contains(err.Error(), certFile) || !strings.Contains(err.Error(), `"n2"`) {
		t.Errorf("a certificate for another node: %v", err)
	}
	_, err = LoadIdentity(IdentityConfig{NodeID: "n1", Name: "mft", CertFile: certFile, KeyFile: keyFile, CAFile: caFile})
	if err == nil || !strings.Contains(err.Error(), "GossipKey") {
		t.Errorf("operator files without a gossip key: %v", err)
	}
}
