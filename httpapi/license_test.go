package httpapi_test

import (
	"bytes"
	"regexp"
	"testing"
	"time"

	"github.com/udmg/gateway/licensing"
	ts "github.com/udmg/gateway/testsupport"
)

type licenseOut struct {
	ID, Licensee, Issued, Expires, Problem string
	Nodes                                  int
	Evaluation, Valid                      bool
	SlotsUsed                              int
	Slots                                  []struct {
		NodeID   string
		Licensed bool
		Status   string
	}
}

func getLicense(t *testing.T, c *ts.APIClient) licenseOut {
	t.Helper()
	r := do(t, c, "GET", "/api/license", nil)
	expect(t, r, 200, "")
	var l licenseOut
	if err := r.Decode(&l); err != nil {
		t.Fatal(err)
	}
	return l
}

func sign(t *testing.T, l licensing.License, key []byte) []byte {
	t.Helper()
	data, err := licensing.Sign(l, key)
	if err != nil {
		t.Fatal(err)
	}
	return data
}

func TestLicense(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	admin := e.admin()
	anyone := e.addUser("someone", "someone-password", nil)

	// Without a license: the one-node evaluation, this node in its slot.
	var l licenseOut
	if !ts.Eventually(10*time.Second, func() bool {
		l = getLicense(t, anyone)
		return l.SlotsUsed == 1
	}) {
		t.Fatalf("evaluation license %+v", l)
	}
	if !l.Evaluation || !l.Valid || l.Nodes != 1 || l.ID != licensing.EvaluationID || len(l.Slots) != 1 ||
		l.Slots[0].NodeID != e.node.ID() || !l.Slots[0].Licensed || l.Slots[0].Status != "ACTIVE" {
		t.Fatalf("evaluation license %+v", l)
	}

	now := time.Now()
	good := licensing.License{ID: "lic-1", Licensee: "ACME Corp", Nodes: 3, Issued: now.Add(-time.Hour), Expires: now.AddDate(1, 0, 0)}
	valid := sign(t, good, vendorPriv)
	_, otherKey, _ := licensing.GenerateKey()
	tampered := regexp.MustCompile(`"nodes":\s*3`).ReplaceAll(valid, []byte(`"nodes": 9`))
	if bytes.Equal(tampered, valid) {
		t.Fatalf("no node count to tamper with in %s", valid)
	}
	expired := good
	expired.Issued, expired.Expires = now.AddDate(-1, 0, 0), now.Add(-24*time.Hour)

	refused := []struct {
		name string
		body []byte
		want string
	}{
		{"empty", nil, "empty"},
		{"not JSON", []byte("this is not a license"), "not JSON"},
		{"truncated", valid[:len(valid)/2], "truncated"},
		{"tampered", tampered, "signature"},
		{"wrong key", sign(t, good, otherKey), "another vendor key"},
		{"expired", sign(t, expired, vendorPriv), "expired"},
	}
	for _, c := range refused {
		t.Run(c.name, func(t *testing.T) {
			expect(t, do(t, admin, "PUT", "/api/license", c.body), 400, c.want)
		})
	}
	expect(t, do(t, anyone, "PUT", "/api/license", valid), 403, "administration write")
	if len(e.node.State().License) != 0 {
		t.Fatal("a refused license reached the cluster state")
	}

	r := do(t, admin, "PUT", "/api/license", valid)
	expect(t, r, 200, "")
	if !bytes.Equal(e.node.State().License, valid) {
		t.Fatal("the license is not in the cluster state")
	}
	l = getLicense(t, anyone)
	if l.Evaluation || !l.Valid || l.ID != "lic-1" || l.Licensee != "ACME Corp" || l.Nodes != 3 ||
		l.Expires != good.Expires.UTC().Truncate(time.Second).Format(time.RFC3339) ||
		l.Issued != good.Issued.UTC().Truncate(time.Second).Format(time.RFC3339) || len(l.Slots) != 1 {
		t.Fatalf("installed license %+v", l)
	}

	// Once past its expiry the API says so.
	e.clock.Advance(400 * 24 * time.Hour)
	l = getLicense(t, anyone)
	if l.Valid || l.ID != "lic-1" || l.Problem == "" {
		t.Fatalf("expired license shown as %+v", l)
	}
}
