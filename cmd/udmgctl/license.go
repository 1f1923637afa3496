package main

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/spf13/pflag"
	"github.com/udmg/gateway/httpapi/wire"
	"github.com/udmg/gateway/licensing"
)

// localInfo is what a local check of a license file shows, in the shape of
// GET /api/license.
func localInfo(l licensing.License, err error) wire.License {
	info := wire.License{ID: l.ID, Licensee: l.Licensee, Nodes: l.Nodes, Valid: err == nil}
	if !l.Issued.IsZero() {
		info.Issued = l.Issued.UTC().Format(time.RFC3339)
	}
	if !l.Expires.IsZero() {
		info.Expires = l.Expires.UTC().Format(time.RFC3339)
	}
	if err != nil {
		info.Problem = err.Error()
	}
	return info
}

func (c *cli) printLicense(info wire.License) error {
	if c.json {
		return c.encodeJSON(info)
	}
	tw := c.table()
	status := "valid"
	switch {
	case info.Evaluation:
		status = "evaluation (no license installed): one licensed node"
	case !info.Valid:
		status = "NOT VALID: " + info.Problem
	}
	fmt.Fprintf(tw, "License ID:\t%s\n", or(info.ID, "-"))
	fmt.Fprintf(tw, "Licensee:\t%s\n", or(info.Licensee, "-"))
	fmt.Fprintf(tw, "Nodes:\t%d\n", info.Nodes)
	fmt.Fprintf(tw, "Issued:\t%s\n", or(info.Issued, "-"))
	fmt.Fprintf(tw, "Expires:\t%s\n", or(info.Expires, "never"))
	fmt.Fprintf(tw, "Status:\t%s\n", status)
	if err := tw.Flush(); err != nil {
		return err
	}
	if info.Slots == nil {
		return nil
	}
	fmt.Fprintf(c.stdout, "\nSlots: %d of %d used\n", info.SlotsUsed, info.Nodes)
	tw = c.table()
	fmt.Fprintln(tw, "NODE ID\tLICENSED\tSTATUS")
	for _, s := range info.Slots {
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.NodeID, map[bool]string{true: "yes", false: "no"}[s.Licensed], s.Status)
	}
	return tw.Flush()
}

// licenseShow prints the cluster's license, or with --file checks a license
// file here against --pubkey (or the vendor key built into udmgctl).
func (c *cli) licenseShow(fs *pflag.FlagSet) func([]string) error {
	file := fs.String("file", "", "license file to check locally")
	pubFile := fs.String("pubkey", "", "vendor public key file for --file")
	return func([]string) error { return c.showLicense(*file, *pubFile) }
}

func (c *cli) showLicense(file, pubFile string) error {
	if file == "" {
		if pubFile != "" {
			return fmt.Errorf("license show: --pubkey goes with --file")
		}
		var info wire.License
		resp, err := c.callJSON("GET", "/api/license", nil, &info)
		if err != nil {
			return err
		}
		if c.json {
			c.printJSON(resp.body)
			return nil
		}
		return c.printLicense(info)
	}
	pub := licensing.VendorKey
	if pubFile != "" {
		var err error
		if pub, err = licensing.LoadPublicKey(pubFile); err != nil {
			return err
		}
	}
	l, err := licensing.Load(file, pub, time.Now())
	if l.ID == "" && err != nil {
		return err // nothing verified to show
	}
	if perr := c.printLicense(localInfo(l, err)); perr != nil {
		return perr
	}
	return err
}

func (c *cli) licenseInstall(pos []string) error {
	data, err := os.ReadFile(pos[0])
	if err != nil {
		return fmt.Errorf("license install: %w", err)
	}
	resp, err := c.call("PUT", "/api/license", data)
	if err != nil {
		return err
	}
	if c.json {
		c.printJSON(resp.body)
		return nil
	}
	var info wire.License
	if err := json.Unmarshal(resp.body, &info); err != nil {
		return fmt.Errorf("PUT /api/license: unexpected answer: %w", err)
	}
	fmt.Fprintf(c.stdout, "license %s installed: %s, %d node(s), expires %s\n", info.ID, info.Licensee, info.Nodes, info.Expires)
	return nil
}

// licenseKeygen makes the vendor's signing key pair; the private key signs
// licenses, the public key is built into the product.
func (c *cli) licenseKeygen(fs *pflag.FlagSet) func([]string) error {
	dir := fs.String("out", "", "directory for vendor.key and vendor.pub")
	return func([]string) error { return c.keygen(*dir) }
}

func (c *cli) keygen(dir string) error {
	if dir == "" {
		return fmt.Errorf("license keygen: --out DIR is required")
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("license keygen: %w", err)
	}
	pub, priv, err := licensing.GenerateKey()
	if err != nil {
		return err
	}
	privPath, pubPath := filepath.Join(dir, "vendor.key"), filepath.Join(dir, "vendor.pub")
	if err := licensing.WritePrivateKey(privPath, priv); err != nil {
		return err
	}
	if err := licensing.WritePublicKey(pubPath, pub); err != nil {
		os.Remove(privPath) // a private key without its public half is of no use
		return err
	}
	b64 := licensing.EncodePublicKey(pub)
	if c.json {
		return c.encodeJSON(map[string]string{"privateKeyFile": privPath, "publicKeyFile": pubPath, "publicKey": b64, "keyId": licensing.KeyID(pub)})
	}
	fmt.Fprintf(c.stdout, "private key: %s (keep it secret: it signs licenses)\n", privPath)
	fmt.Fprintf(c.stdout, "public key:  %s (key id %s)\n", pubPath, licensing.KeyID(pub))
	fmt.Fprintf(c.stdout, "build the product with: -ldflags \"-X github.com/udmg/gateway/licensing.vendorKey=%s\"\n", b64)
	return nil
}

// parseDate reads 2027-12-31 (midnight UTC) or an RFC 3339 time.
func parseDate(flagName, s string) (time.Time, error) {
	if t, err := time.Parse(time.DateOnly, s); err == nil {
		return t, nil
	}
	t, err := time.Parse(time.RFC3339, s)
	if err != nil {
		return time.Time{}, fmt.Errorf("license sign: --%s %q: want a date like 2027-12-31 or an RFC 3339 time", flagName, s)
	}
	return t, nil
}

// signing is what license sign is told.
type signing struct {
	keyFile, licensee, expires, issued, id, out string
	nodes                                       int
}

func (c *cli) licenseSign(fs *pflag.FlagSet) func([]string) error {
	var s signing
	fs.StringVar(&s.keyFile, "key", "", "vendor private key file")
	fs.StringVar(&s.licensee, "licensee", "", "customer name")
	fs.IntVar(&s.nodes, "nodes", 0, "number of licensed nodes")
	fs.StringVar(&s.expires, "expires", "", "expiry date (2027-12-31 or RFC 3339)")
	fs.StringVar(&s.issued, "issued", "", "issue date (default now)")
	fs.StringVar(&s.id, "id", "", "license ID (default generated)")
	fs.StringVar(&s.out, "out", "", "output file (default standard output)")
	return func([]string) error { return c.sign(s) }
}

func (c *cli) sign(s signing) error {
	for _, f := range []struct{ name, v string }{{"key", s.keyFile}, {"licensee", s.licensee}, {"expires", s.expires}} {
		if f.v == "" {
			return fmt.Errorf("license sign: --%s is required", f.name)
		}
	}
	if s.nodes < 1 {
		return fmt.Errorf("license sign: --nodes must be at least 1")
	}
	var err error
	l := licensing.License{ID: s.id, Licensee: s.licensee, Nodes: s.nodes, Issued: time.Now()}
	if l.Expires, err = parseDate("expires", s.expires); err != nil {
		return err
	}
	if s.issued != "" {
		if l.Issued, err = parseDate("issued", s.issued); err != nil {
			return err
		}
	}
	if l.ID == "" {
		b := make([]byte, 6)
		rand.Read(b)
		l.ID = "udmg-" + hex.EncodeToString(b)
	}
	var priv ed25519.PrivateKey
	if priv, err = licensing.LoadPrivateKey(s.keyFile); err != nil {
		return err
	}
	data, err := licensing.Sign(l, priv)
	if err != nil {
		return err
	}
	summary := fmt.Sprintf("license %s for %s: %d node(s), expires %s", l.ID, l.Licensee, l.Nodes, l.Expires.UTC().Format(time.RFC3339))
	if s.out == "" {
		c.stdout.Write(data)
		fmt.Fprintln(c.stderr, summary)
		return nil
	}
	if err := os.WriteFile(s.out, data, 0o644); err != nil {
		return fmt.Errorf("license sign: %w", err)
	}
	if c.json {
		return c.encodeJSON(map[string]any{"file": s.out, "id": l.ID, "licensee": l.Licensee, "nodes": l.Nodes, "expires": l.Expires.UTC().Format(time.RFC3339)})
	}
	fmt.Fprintln(c.stdout, summary+", written to "+s.out)
	return nil
}
