package licensing

import (
	"bytes"
	"crypto/ed25519"
	"encoding/json"
	"errors"
	"testing"
	"time"
)

// FuzzParse feeds arbitrary bytes to Parse twice: as a whole file, and as the
// payload of a correctly signed file (so the fuzzer also reaches the field
// checks behind the signature). Parse must never panic, every refusal must
// match one of the sentinel errors, and whatever it accepts must be a valid
// license that signs and parses back to itself.
func FuzzParse(f *testing.F) {
	pub, priv := testKey(f, 7)
	good := mustSign(f, testLic, priv)
	f.Add(good)
	f.Add(good[:len(good)/2])
	f.Add([]byte{})
	f.Add([]byte("null"))
	f.Add([]byte(`{"license":{},"signature":""}`))
	f.Add([]byte(`{"license":{"id":"x","licensee":"y","nodes":1,"issued":"2026-01-01T00:00:00Z","expires":"2027-01-01T00:00:00Z"},"signature":"AA=="}`))
	f.Add([]byte(`{"id":"x","licensee":"y","nodes":1,"issued":"2026-01-01T00:00:00Z","expires":"2027-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"id":"x","licensee":"y","nodes":0,"issued":"2026-01-01T00:00:00+02:00","expires":"2027-01-01T00:00:00.5Z"}`))
	f.Add([]byte(`{"id":"\u00e9","licensee":"\ud800","nodes":99999999999999999999,"issued":"","expires":null}`))

	f.Fuzz(func(t *testing.T, data []byte) {
		check := func(what string, in []byte) {
			l, err := Parse(in, pub, testNow)
			if err != nil {
				classified := false
				for _, s := range allErrors {
					classified = classified || errors.Is(err, s)
				}
				if !classified {
					t.Fatalf("%s: unclassified error %q", what, err)
				}
				return
			}
			if verr := validate(l); verr != nil || l.Check(testNow) != nil || l.NodeLimit(testNow) < 1 {
				t.Fatalf("%s: accepted invalid license %+v: %v", what, l, verr)
			}
			again, err := Parse(mustSign(t, l, priv), pub, testNow)
			if err != nil {
				t.Fatalf("%s: re-signed %+v refused: %v", what, l, err)
			}
			if again.ID != l.ID || again.Licensee != l.Licensee || again.Nodes != l.Nodes ||
				!again.Issued.Equal(l.Issued.Truncate(time.Second)) || !again.Expires.Equal(l.Expires.Truncate(time.Second)) {
				t.Fatalf("%s: re-signed %+v parsed as %+v", what, l, again)
			}
		}
		check("file", data)

		// data as a signed payload.
		signed := data
		var c bytes.Buffer
		if json.Compact(&c, data) == nil {
			signed = c.Bytes()
		}
		sig := sigEncoding.EncodeToString(ed25519.Sign(priv, signed))
		doc := append([]byte(`{"license":`), data...)
		doc = append(doc, `,"signature":"`+sig+`"}`...)
		check("signed payload", doc)
	})
}
