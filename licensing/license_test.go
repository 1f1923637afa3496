package licensing

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// allErrors lists every sentinel, so tests can check a refusal matches the
// expected ones and no other.
var allErrors = map[string]error{
	"ErrMalformed": ErrMalformed, "ErrEmpty": ErrEmpty, "ErrTruncated": ErrTruncated,
	"ErrNotJSON": ErrNotJSON, "ErrNoKey": ErrNoKey, "ErrSignature": ErrSignature,
	"ErrWrongKey": ErrWrongKey, "ErrMissingField": ErrMissingField,
	"ErrInvalidField": ErrInvalidField, "ErrNotYetValid": ErrNotYetValid, "ErrExpired": ErrExpired,
}

func testKey(t testing.TB, seed byte) (ed25519.PublicKey, ed25519.PrivateKey) {
	t.Helper()
	priv := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{seed}, ed25519.SeedSize))
	return priv.Public().(ed25519.PublicKey), priv
}

var (
	testNow = time.Date(2026, 6, 1, 12, 0, 0, 0, time.UTC)
	testLic = License{
		ID: "L-2026-0042", Licensee: "ACME Corp", Nodes: 2,
		Issued:  time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC),
		Expires: time.Date(2027, 1, 1, 0, 0, 0, 0, time.UTC),
	}
)

func mustSign(t testing.TB, l License, priv ed25519.PrivateKey) []byte {
	t.Helper()
	data, err := Sign(l, priv)
	if err != nil {
		t.Fatalf("Sign: %v", err)
	}
	return data
}

// signRaw builds a file around arbitrary payload bytes, signed correctly, to
// test what Parse does with a genuine signature over a bad payload.
func signRaw(t testing.TB, raw string, priv ed25519.PrivateKey) []byte {
	t.Helper()
	var c bytes.Buffer
	if err := json.Compact(&c, []byte(raw)); err != nil {
		t.Fatalf("test payload %q is not JSON: %v", raw, err)
	}
	sig := sigEncoding.EncodeToString(ed25519.Sign(priv, c.Bytes()))
	return []byte(`{"license":` + raw + `,"signature":"` + sig + `"}`)
}

func checkErr(t *testing.T, err error, want ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want %v", want)
	}
	wanted := map[string]bool{}
	for _, w := range want {
		wanted[w] = true
	}
	for name, sentinel := range allErrors {
		if got := errors.Is(err, sentinel); got != wanted[name] {
			t.Errorf("errors.Is(%q, %s) = %v, want %v", err, name, got, wanted[name])
		}
	}
}

func TestSignParseRoundTrip(t *testing.T) {
	pub, priv := testKey(t, 1)
	data := mustSign(t, testLic, priv)
	got, err := Parse(data, pub, testNow)
	if err != nil {
		t.Fatalf("Parse: %v\n%s", err, data)
	}
	if got != testLic {
		t.Fatalf("round trip: got %+v, want %+v", got, testLic)
	}
	if got.IsEvaluation() {
		t.Fatal("a signed license reported as evaluation")
	}
	// The document has exactly the documented shape.
	var doc map[string]json.RawMessage
	if err := json.Unmarshal(data, &doc); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"license", "signature", "key"} {
		if _, ok := doc[k]; !ok {
			t.Errorf("signed file lacks %q:\n%s", k, data)
		}
	}
	var p map[string]any
	if err := json.Unmarshal(doc["license"], &p); err != nil {
		t.Fatal(err)
	}
	want := map[string]any{"id": "L-2026-0042", "licensee": "ACME Corp", "nodes": 2.0,
		"issued": "2026-01-01T00:00:00Z", "expires": "2027-01-01T00:00:00Z"}
	if len(p) != len(want) {
		t.Errorf("payload fields %v, want %v", p, want)
	}
	for k, v := range want {
		if p[k] != v {
			t.Errorf("payload %s = %v, want %v", k, p[k], v)
		}
	}
}

func TestSignNormalisesTimes(t *testing.T) {
	pub, priv := testKey(t, 1)
	paris := time.FixedZone("CET", 3600)
	l := testLic
	l.Issued = time.Date(2026, 1, 1, 1, 0, 0, 999, paris)
	l.Expires = time.Date(2027, 1, 1, 1, 0, 0, 0, paris)
	got, err := Parse(mustSign(t, l, priv), pub, testNow)
	if err != nil {
		t.Fatal(err)
	}
	if !got.Issued.Equal(testLic.Issued) || got.Issued.Location() != time.UTC || !got.Expires.Equal(testLic.Expires) {
		t.Fatalf("times not normalised to UTC seconds: %+v", got)
	}
}

func TestWhitespaceDoesNotBreakSignature(t *testing.T) {
	pub, priv := testKey(t, 1)
	data := mustSign(t, testLic, priv)
	var compact, indented bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		t.Fatal(err)
	}
	if err := json.Indent(&indented, compact.Bytes(), "\t", "\t\t"); err != nil {
		t.Fatal(err)
	}
	crlf := bytes.ReplaceAll(data, []byte("\n"), []byte("\r\n"))
	for name, d := range map[string][]byte{"compact": compact.Bytes(), "indented": indented.Bytes(), "crlf": crlf} {
		if _, err := Parse(d, pub, testNow); err != nil {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestParseRefuses(t *testing.T) {
	pub, priv := testKey(t, 1)
	otherPub, otherPriv := testKey(t, 2)
	good := mustSign(t, testLic, priv)
	s := string(good)

	withoutKey := func(d []byte) []byte {
		var doc map[string]json.RawMessage
		if err := json.Unmarshal(d, &doc); err != nil {
			t.Fatal(err)
		}
		delete(doc, "key")
		out, _ := json.Marshal(doc)
		return out
	}
	sigAt := strings.Index(s, `"signature": "`) + len(`"signature": "`)
	flip := func(i int) []byte {
		d := append([]byte(nil), good...)
		d[i] ^= 0x01
		return d
	}
	expired := testLic
	expired.Expires = time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	expired.Issued = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	future := testLic
	future.Issued = time.Date(2026, 7, 1, 0, 0, 0, 0, time.UTC)

	cases := []struct {
		name string
		data []byte
		pub  ed25519.PublicKey
		want []string
		msg  string // substring of the error text
	}{
		{"tamper nodes", []byte(strings.Replace(s, `"nodes": 2`, `"nodes": 3`, 1)), pub,
			[]string{"ErrSignature"}, "altered or signed with another key"},
		{"tamper licensee byte", []byte(strings.Replace(s, "ACME", "ACMF", 1)), pub,
			[]string{"ErrSignature"}, "altered"},
		{"tamper expiry", []byte(strings.Replace(s, "2027-01-01", "2099-01-01", 1)), pub,
			[]string{"ErrSignature"}, "altered"},
		{"flip byte in signature", flip(sigAt + 10), pub, []string{"ErrSignature"}, "signature"},
		{"flip last signature char", flip(sigAt + 85), pub, []string{"ErrSignature"}, "signature"},
		{"signature not base64", []byte(s[:sigAt] + "!!!!" + s[sigAt+4:]), pub,
			[]string{"ErrSignature"}, "not a base64 ed25519 signature"},
		{"signature too short", []byte(s[:sigAt] + s[sigAt+4:]), pub, []string{"ErrSignature"}, "signature"},
		{"wrong key", good, otherPub, []string{"ErrSignature", "ErrWrongKey"}, "this product trusts key"},
		{"wrong key, no key hint", withoutKey(good), otherPub, []string{"ErrSignature"}, "signed with another key"},
		{"signed by other vendor key", mustSign(t, testLic, otherPriv), pub, []string{"ErrSignature", "ErrWrongKey"}, KeyID(otherPub)},
		{"no public key", good, nil, []string{"ErrNoKey"}, "no vendor public key"},
		{"short public key", good, pub[:16], []string{"ErrNoKey"}, "16 bytes"},
		{"expired", mustSign(t, expired, priv), pub, []string{"ErrExpired"}, "expired on 2026-01-02"},
		{"expires exactly now", mustSign(t, License{ID: "x", Licensee: "y", Nodes: 1, Issued: expired.Issued, Expires: testNow}, priv), pub,
			[]string{"ErrExpired"}, "expired on 2026-06-01T12:00:00Z"},
		{"not yet valid", mustSign(t, future, priv), pub, []string{"ErrNotYetValid"}, "valid from 2026-07-01"},
		{"truncated", good[:len(good)/2], pub, []string{"ErrMalformed", "ErrTruncated"}, "truncated"},
		{"truncated by one byte", bytes.TrimSpace(good)[:len(bytes.TrimSpace(good))-1], pub, []string{"ErrMalformed", "ErrTruncated"}, "truncated"},
		{"non-JSON", []byte("LICENSE KEY: 1234-5678"), pub, []string{"ErrMalformed", "ErrNotJSON"}, "not JSON"},
		{"binary", []byte{0x1f, 0x8b, 0x08, 0x00}, pub, []string{"ErrMalformed", "ErrNotJSON"}, "not JSON"},
		{"empty file", nil, pub, []string{"ErrMalformed", "ErrEmpty"}, "empty"},
		{"blank file", []byte(" \n\t\r\n"), pub, []string{"ErrMalformed", "ErrEmpty"}, "empty"},
		{"trailing data", append(append([]byte(nil), good...), "{}"...), pub, []string{"ErrMalformed"}, "after the JSON document"},
		{"unknown top-level field", []byte(strings.Replace(s, `"key":`, `"kez":`, 1)), pub, []string{"ErrMalformed"}, `unknown field "kez"`},
		{"differently cased field", []byte(strings.Replace(s, `"license":`, `"License":`, 1)), pub, []string{"ErrMalformed"}, `unknown field "License"`},
		{"duplicate license field", []byte(strings.Replace(s, `"key":`, `"license": {}, "key":`, 1)), pub, []string{"ErrMalformed"}, `"license" appears twice`},
		{"key hint not a string", []byte(`{"license":{},"key":1,"signature":""}`), pub, []string{"ErrMalformed"}, `"key" is not a string`},
		{"JSON array", []byte(`[1,2]`), pub, []string{"ErrMalformed"}, "not a license document"},
		{"JSON string", []byte(`"license"`), pub, []string{"ErrMalformed"}, "not a license document"},
		{"empty object", []byte(`{}`), pub, []string{"ErrMalformed"}, `no "license"`},
		{"license null", []byte(`{"license":null,"signature":"AA=="}`), pub, []string{"ErrMalformed"}, `no "license"`},
		{"license not object", []byte(`{"license":"x","signature":"AA=="}`), pub, []string{"ErrMalformed"}, "not an object"},
		{"no signature", []byte(`{"license":{"id":"x"}}`), pub, []string{"ErrMalformed"}, `no "signature"`},
		{"signature not string", []byte(`{"license":{},"signature":5}`), pub, []string{"ErrMalformed"}, "not a license document"},
		{"signed nodes 0", signRaw(t, `{"id":"x","licensee":"y","nodes":0,"issued":"2026-01-01T00:00:00Z","expires":"2027-01-01T00:00:00Z"}`, priv), pub,
			[]string{"ErrInvalidField"}, `"nodes": must be at least 1, got 0`},
		{"signed nodes negative", signRaw(t, `{"id":"x","licensee":"y","nodes":-3,"issued":"2026-01-01T00:00:00Z","expires":"2027-01-01T00:00:00Z"}`, priv), pub,
			[]string{"ErrInvalidField"}, "got -3"},
		{"signed nodes string", signRaw(t, `{"id":"x","licensee":"y","nodes":"2","issued":"2026-01-01T00:00:00Z","expires":"2027-01-01T00:00:00Z"}`, priv), pub,
			[]string{"ErrInvalidField"}, `"nodes"`},
		{"signed nodes fraction", signRaw(t, `{"id":"x","licensee":"y","nodes":1.5,"issued":"2026-01-01T00:00:00Z","expires":"2027-01-01T00:00:00Z"}`, priv), pub,
			[]string{"ErrInvalidField"}, `"nodes"`},
		{"signed nodes missing", signRaw(t, `{"id":"x","licensee":"y","issued":"2026-01-01T00:00:00Z","expires":"2027-01-01T00:00:00Z"}`, priv), pub,
			[]string{"ErrMissingField"}, `missing license field "nodes"`},
		{"signed licensee missing", signRaw(t, `{"id":"x","nodes":1,"issued":"2026-01-01T00:00:00Z","expires":"2027-01-01T00:00:00Z"}`, priv), pub,
			[]string{"ErrMissingField"}, `missing license field "licensee"`},
		{"signed licensee blank", signRaw(t, `{"id":"x","licensee":"  ","nodes":1,"issued":"2026-01-01T00:00:00Z","expires":"2027-01-01T00:00:00Z"}`, priv), pub,
			[]string{"ErrMissingField"}, `missing license field "licensee"`},
		{"signed id missing", signRaw(t, `{"licensee":"y","nodes":1,"issued":"2026-01-01T00:00:00Z","expires":"2027-01-01T00:00:00Z"}`, priv), pub,
			[]string{"ErrMissingField"}, `missing license field "id"`},
		{"signed issued missing", signRaw(t, `{"id":"x","licensee":"y","nodes":1,"expires":"2027-01-01T00:00:00Z"}`, priv), pub,
			[]string{"ErrMissingField"}, `missing license field "issued"`},
		{"signed expires missing", signRaw(t, `{"id":"x","licensee":"y","nodes":1,"issued":"2026-01-01T00:00:00Z"}`, priv), pub,
			[]string{"ErrMissingField"}, `missing license field "expires"`},
		{"signed expires empty", signRaw(t, `{"id":"x","licensee":"y","nodes":1,"issued":"2026-01-01T00:00:00Z","expires":""}`, priv), pub,
			[]string{"ErrMissingField"}, `missing license field "expires"`},
		{"signed expires not RFC 3339", signRaw(t, `{"id":"x","licensee":"y","nodes":1,"issued":"2026-01-01T00:00:00Z","expires":"01/01/2027"}`, priv), pub,
			[]string{"ErrInvalidField"}, "not an RFC 3339 time"},
		{"signed expires before issued", signRaw(t, `{"id":"x","licensee":"y","nodes":1,"issued":"2026-01-01T00:00:00Z","expires":"2025-01-01T00:00:00Z"}`, priv), pub,
			[]string{"ErrInvalidField"}, "is not after issued"},
		{"signed zero expiry", signRaw(t, `{"id":"x","licensee":"y","nodes":1,"issued":"0000-01-01T00:00:00Z","expires":"0001-01-01T00:00:00Z"}`, priv), pub,
			[]string{"ErrMissingField"}, `"expires"`},
		{"signed id wrong type", signRaw(t, `{"id":7,"licensee":"y","nodes":1,"issued":"2026-01-01T00:00:00Z","expires":"2027-01-01T00:00:00Z"}`, priv), pub,
			[]string{"ErrInvalidField"}, `"id"`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			l, err := Parse(c.data, c.pub, testNow)
			checkErr(t, err, c.want...)
			if err != nil && !strings.Contains(err.Error(), c.msg) {
				t.Errorf("error %q does not mention %q", err, c.msg)
			}
			dated := errors.Is(err, ErrExpired) || errors.Is(err, ErrNotYetValid)
			if !dated && l != (License{}) {
				t.Errorf("refused license returned %+v", l)
			}
			if dated && l.ID == "" {
				t.Errorf("expired/not-yet-valid license not returned for display")
			}
		})
	}
}

// TestEveryByteFlipIsRefused flips each byte of a signed file in turn: none
// may still yield a license.
func TestEveryByteFlipIsRefused(t *testing.T) {
	pub, priv := testKey(t, 1)
	good := mustSign(t, testLic, priv)
	for i := range good {
		for _, bit := range []byte{0x01, 0x20, 0x80} {
			d := append([]byte(nil), good...)
			d[i] ^= bit
			if isJSONSpace(good[i]) && isJSONSpace(d[i]) {
				continue // whitespace for whitespace is not a change
			}
			if l, err := Parse(d, pub, testNow); err == nil {
				t.Fatalf("byte %d (%q) ^ %#x accepted: %+v", i, good[i], bit, l)
			}
		}
	}
}

func isJSONSpace(b byte) bool { return b == ' ' || b == '\t' || b == '\n' || b == '\r' }

func TestCheckAndNodeLimit(t *testing.T) {
	l := testLic
	for _, c := range []struct {
		now   time.Time
		limit int
		err   error
	}{
		{testNow, 2, nil},
		{l.Issued, 2, nil},
		{l.Issued.Add(-IssuedSkew), 2, nil},
		{l.Issued.Add(-IssuedSkew - time.Second), 0, ErrNotYetValid},
		{l.Expires.Add(-time.Nanosecond), 2, nil},
		{l.Expires, 0, ErrExpired},
		{l.Expires.Add(time.Hour), 0, ErrExpired},
	} {
		if got := l.NodeLimit(c.now); got != c.limit {
			t.Errorf("NodeLimit(%v) = %d, want %d", c.now, got, c.limit)
		}
		if err := l.Check(c.now); !errors.Is(err, c.err) || (c.err == nil) != (err == nil) {
			t.Errorf("Check(%v) = %v, want %v", c.now, err, c.err)
		}
	}
	if got := (License{}).NodeLimit(testNow); got != 0 {
		t.Errorf("zero license NodeLimit = %d", got)
	}
}

func TestEvaluation(t *testing.T) {
	e := Evaluation()
	if e.Nodes != 1 || e.Licensee != "evaluation" || e.ID != EvaluationID || !e.IsEvaluation() {
		t.Fatalf("Evaluation() = %+v", e)
	}
	for _, now := range []time.Time{{}, testNow, time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC)} {
		if err := e.Check(now); err != nil || e.NodeLimit(now) != 1 {
			t.Errorf("evaluation at %v: %v, limit %d", now, err, e.NodeLimit(now))
		}
	}
	// The evaluation license survives a JSON round trip (the state machine
	// may store it) and still never expires.
	b, err := json.Marshal(e)
	if err != nil {
		t.Fatal(err)
	}
	var back License
	if err := json.Unmarshal(b, &back); err != nil || back != e || !back.IsEvaluation() {
		t.Fatalf("JSON round trip %s -> %+v, %v", b, back, err)
	}
}

func TestSignRefusesBadLicense(t *testing.T) {
	_, priv := testKey(t, 1)
	for name, c := range map[string]struct {
		l    License
		want error
	}{
		"no id":           {License{Licensee: "a", Nodes: 1, Issued: testLic.Issued, Expires: testLic.Expires}, ErrMissingField},
		"no licensee":     {License{ID: "a", Nodes: 1, Issued: testLic.Issued, Expires: testLic.Expires}, ErrMissingField},
		"zero nodes":      {License{ID: "a", Licensee: "b", Issued: testLic.Issued, Expires: testLic.Expires}, ErrInvalidField},
		"no issued":       {License{ID: "a", Licensee: "b", Nodes: 1, Expires: testLic.Expires}, ErrMissingField},
		"no expiry":       {License{ID: "a", Licensee: "b", Nodes: 1, Issued: testLic.Issued}, ErrMissingField},
		"backwards":       {License{ID: "a", Licensee: "b", Nodes: 1, Issued: testLic.Expires, Expires: testLic.Issued}, ErrInvalidField},
		"bad UTF-8":       {License{ID: "a", Licensee: "b\xff", Nodes: 1, Issued: testLic.Issued, Expires: testLic.Expires}, ErrInvalidField},
		"evaluation form": {Evaluation(), ErrMissingField},
	} {
		if _, err := Sign(c.l, priv); !errors.Is(err, c.want) || !strings.HasPrefix(err.Error(), "sign license: ") {
			t.Errorf("%s: Sign error %v, want %v", name, err, c.want)
		}
	}
	if _, err := Sign(testLic, priv[:10]); !errors.Is(err, ErrKey) {
		t.Errorf("short private key: %v", err)
	}
}

func TestLoad(t *testing.T) {
	pub, priv := testKey(t, 1)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}

	good := write("good.json", mustSign(t, testLic, priv))
	if l, err := Load(good, pub, testNow); err != nil || l != testLic {
		t.Fatalf("Load good: %+v, %v", l, err)
	}

	expired := testLic
	expired.Issued = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)
	expired.Expires = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	p := write("expired.json", mustSign(t, expired, priv))
	l, err := Load(p, pub, testNow)
	if want := "load license " + p + ": expired on 2026-01-01"; err == nil || err.Error() != want {
		t.Errorf("Load expired: %v, want %q", err, want)
	}
	if !errors.Is(err, ErrExpired) || l.ID != expired.ID {
		t.Errorf("Load expired: license %+v, err %v", l, err)
	}

	p = write("empty.json", nil)
	if _, err := Load(p, pub, testNow); !errors.Is(err, ErrEmpty) || !strings.Contains(err.Error(), p) {
		t.Errorf("Load empty: %v", err)
	}

	missing := filepath.Join(dir, "missing.json")
	_, err = Load(missing, pub, testNow)
	if !errors.Is(err, fs.ErrNotExist) || strings.Count(err.Error(), missing) != 1 || !strings.HasPrefix(err.Error(), "load license "+missing+": ") {
		t.Errorf("Load missing: %v", err)
	}

	big := write("big.json", bytes.Repeat([]byte(" "), MaxFileSize+1))
	if _, err := Load(big, pub, testNow); !errors.Is(err, ErrMalformed) || !strings.Contains(err.Error(), "larger than") {
		t.Errorf("Load big: %v", err)
	}

	if _, err := Load(dir, pub, testNow); err == nil || !strings.Contains(err.Error(), dir) {
		t.Errorf("Load directory: %v", err)
	}

	other, _ := testKey(t, 9)
	if _, err := Load(good, other, testNow); !errors.Is(err, ErrWrongKey) || !strings.HasPrefix(err.Error(), "load license "+good+": ") {
		t.Errorf("Load wrong key: %v", err)
	}
}

func TestVendorKeyIsSettable(t *testing.T) {
	pub, priv := testKey(t, 3)
	old := VendorKey
	t.Cleanup(func() { VendorKey = old })
	VendorKey = pub
	if _, err := Parse(mustSign(t, testLic, priv), VendorKey, testNow); err != nil {
		t.Fatal(err)
	}
}
