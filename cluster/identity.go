package cluster

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"io"
	"math/big"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/hkdf"
)

// DeriveKey turns the cluster's JoinToken into a 32-byte key for one
// purpose ("ca", "gossip", "secrets", …): every node that knows the token
// derives the same key, and keys for different purposes are independent,
// so the token itself never has to leave the configuration.
func DeriveKey(token, purpose string) []byte {
	k := make([]byte, 32)
	r := hkdf.New(sha256.New, []byte(token), []byte("udmg cluster token v1"), []byte(purpose))
	if _, err := io.ReadFull(r, k); err != nil {
		panic("hkdf: " + err.Error()) // cannot happen for 32 bytes
	}
	return k
}

// Identity is what a node proves itself with to its peers on every Raft
// connection, membership probe and forwarded write: its own certificate, the
// cluster CAs it trusts, the cluster name every node certificate carries,
// and the gossip keys.
type Identity struct {
	Cert  tls.Certificate
	Roots *x509.CertPool
	// Name is the cluster's name (GatewayName): a DNS SAN of every node
	// certificate, checked in every handshake instead of the dialled
	// address, so that AdvertiseHost may be an IP.
	Name string
	// GossipKeys encrypt gossip; the first is the one used to send.
	GossipKeys [][]byte
	// Source says where the identity came from, for the start-up log.
	Source string
}

// IdentityConfig is where a node's identity comes from: operator files when
// CertFile is set, else the join tokens.
type IdentityConfig struct {
	NodeID string
	Name   string
	// Tokens are the JoinToken values, the first the current one: the
	// node's certificate comes from the first, the CAs of all are trusted.
	Tokens                    []string
	CertFile, KeyFile, CAFile string
	// GossipKeys, when set, replace the keys derived from the tokens.
	GossipKeys [][]byte
}

// ParseTokens splits a JoinToken value ("new,old") into its tokens.
func ParseTokens(s string) []string {
	var out []string
	for _, t := range strings.Split(s, ",") {
		if t = strings.TrimSpace(t); t != "" {
			out = append(out, t)
		}
	}
	return out
}

// NewToken is a fresh random join token: 32 random bytes, base64url.
func NewToken() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(b), nil
}

// LoadIdentity builds the node's identity from operator files or tokens.
// With neither it uses a random token of this process alone: the node can
// then talk to nobody, which is right for a lone node.
func LoadIdentity(c IdentityConfig) (*Identity, error) {
	id := &Identity{Name: c.Name, Roots: x509.NewCertPool()}
	switch {
	case c.CertFile != "":
		cert, err := tls.LoadX509KeyPair(c.CertFile, c.KeyFile)
		if err != nil {
			return nil, fmt.Errorf("[cluster] TLSCert/TLSKey %s, %s: %w", c.CertFile, c.KeyFile, err)
		}
		pem, err := os.ReadFile(c.CAFile)
		if err != nil {
			return nil, fmt.Errorf("[cluster] TLSCA: %w", err)
		}
		if !id.Roots.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("[cluster] TLSCA %s: no PEM certificate in it", c.CAFile)
		}
		leaf, err := x509.ParseCertificate(cert.Certificate[0])
		if err != nil {
			return nil, fmt.Errorf("[cluster] TLSCert %s: %w", c.CertFile, err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: id.Roots, DNSName: c.Name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
			return nil, fmt.Errorf("[cluster] TLSCert %s is not usable as this cluster's node certificate (signed by TLSCA, DNS name %q = [global] GatewayName, client and server auth): %w", c.CertFile, c.Name, err)
		}
		if !certNames(leaf, c.NodeID) {
			return nil, fmt.Errorf("[cluster] TLSCert %s does not name this node's ID %q (as CN, DNS or URI SAN): peers would not add it as a voter", c.CertFile, c.NodeID)
		}
		cert.Leaf = leaf
		id.Cert, id.Source = cert, "operator files"
		for _, t := range c.Tokens {
			id.GossipKeys = append(id.GossipKeys, DeriveKey(t, "gossip"))
		}
	default:
		tokens := c.Tokens
		id.Source = "JoinToken"
		if len(tokens) == 0 {
			t, err := NewToken()
			if err != nil {
				return nil, err
			}
			tokens, id.Source = []string{t}, "a random token of this process (lone node)"
		}
		var signer *x509.Certificate
		var signerKey ed25519.PrivateKey
		for i, t := range tokens {
			ca, key, err := tokenCA(t)
			if err != nil {
				return nil, err
			}
			id.Roots.AddCert(ca)
			if i == 0 {
				signer, signerKey = ca, key
			}
			id.GossipKeys = append(id.GossipKeys, DeriveKey(t, "gossip"))
		}
		cert, err := nodeCert(signer, signerKey, c.NodeID, c.Name)
		if err != nil {
			return nil, err
		}
		id.Cert = cert
	}
	if len(c.GossipKeys) > 0 {
		id.GossipKeys = c.GossipKeys
	}
	if len(id.GossipKeys) == 0 {
		return nil, fmt.Errorf("[cluster] GossipKey or JoinToken: one must be set with TLSCert/TLSKey/TLSCA (gossip is always encrypted)")
	}
	return id, nil
}

// caEpoch is the fixed validity start of token CAs: every node must build
// the byte-identical CA certificate from the token.
var caEpoch = time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)

// TokenCA is the cluster CA derived from a join token, for tools and tests
// that issue certificates of that cluster (whoever has the token can).
func TokenCA(token string) (*x509.Certificate, ed25519.PrivateKey, error) { return tokenCA(token) }

// tokenCA derives the cluster CA from a token: an ed25519 key from
// DeriveKey(token, "ca") and a certificate from a fixed template (ed25519
// signatures are deterministic), so every node builds the same CA.
func tokenCA(token string) (*x509.Certificate, ed25519.PrivateKey, error) {
	key := ed25519.NewKeyFromSeed(DeriveKey(token, "ca"))
	pub := key.Public().(ed25519.PublicKey)
	sum := sha256.Sum256(pub)
	tmpl := &x509.Certificate{
		SerialNumber:          new(big.Int).SetBytes(sum[:16]),
		Subject:               pkix.Name{Organization: []string{"udmg"}, CommonName: "udmg cluster CA " + hex.EncodeToString(sum[:4])},
		NotBefore:             caEpoch,
		NotAfter:              caEpoch.AddDate(100, 0, 0),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
		SubjectKeyId:          sum[:20],
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, pub, key)
	if err != nil {
		return nil, nil, fmt.Errorf("derive cluster CA: %w", err)
	}
	ca, err := x509.ParseCertificate(der)
	return ca, key, err
}

// nodeCert makes this run's node certificate: a fresh key, the node ID as
// CN and URI SAN, the cluster name as DNS SAN, signed by the cluster CA.
func nodeCert(ca *x509.Certificate, caKey ed25519.PrivateKey, nodeID, name string) (tls.Certificate, error) {
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		return tls.Certificate{}, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{Organization: []string{"udmg"}, CommonName: nodeID},
		DNSNames:     []string{name},
		URIs:         []*url.URL{nodeURI(nodeID)},
		// Peers' clocks may be behind ours.
		NotBefore:   now.Add(-24 * time.Hour),
		NotAfter:    now.AddDate(10, 0, 0),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, pub, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("node certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return tls.Certificate{}, err
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, nil
}

func nodeURI(id string) *url.URL { return &url.URL{Scheme: "udmg-node", Opaque: url.PathEscape(id)} }

// certNames says whether a node certificate names node ID id: as its CN, a
// DNS SAN or a udmg-node: URI SAN.
func certNames(c *x509.Certificate, id string) bool {
	if c.Subject.CommonName == id || slices.Contains(c.DNSNames, id) {
		return true
	}
	for _, u := range c.URIs {
		if u.String() == nodeURI(id).String() {
			return true
		}
	}
	return false
}

// LoneNode says whether a node is configured to run alone with no identity
// (no Join, BootstrapExpect 1, neither JoinToken nor TLSCert): nobody may
// reach its Raft and gossip ports.
func LoneNode(join []string, bootstrapExpect int, joinToken, tlsCert string) bool {
	return len(join) == 0 && bootstrapExpect <= 1 && strings.Trim(joinToken, " ,") == "" && tlsCert == ""
}

// LoneBinds moves a lone node's Raft and gossip to loopback when they are
// bound to the defaults (":8300", ":7946"); an explicit host is kept.
func LoneBinds(raftBind, gossipBind string) (string, string) {
	if raftBind == ":8300" {
		raftBind = "127.0.0.1:8300"
	}
	if gossipBind == ":7946" {
		gossipBind = "127.0.0.1:7946"
	}
	return raftBind, gossipBind
}
