package cluster_test

import "testing"

// TestAuditJudge: the campaign's write-audit check finds a change made
// under an epoch older than one that already wrote or became ACTIVE, and
// tells a late write into the writer's own staging file apart.
func TestAuditJudge(t *testing.T) {
	w := func(node string, epoch uint64, path string, ns int64) auditLine {
		return auditLine{Node: node, Epoch: epoch, Op: "write", Path: path, Len: 1, UnixNs: ns}
	}
	act := map[uint64]int64{3: 100, 4: 200}
	cases := []struct {
		name      string
		lines     []auditLine
		bad, late int
	}{
		{"epochs in order", []auditLine{w("a", 3, "/admin/f", 110), w("b", 4, "/admin/g", 210), w("b", 4, "/admin/f", 220)}, 0, 0},
		{"older epoch after a newer one wrote", []auditLine{w("b", 4, "/admin/g", 150), w("a", 3, "/admin/f", 160)}, 1, 0},
		{"older epoch after the newer became ACTIVE", []auditLine{w("a", 3, "/admin/f", 190), w("a", 3, "/admin/f", 205)}, 1, 0},
		{"late write into a staging file", []auditLine{w("a", 3, "/admin/.udmg-staging.7.3", 205)}, 0, 1},
		{"late rename of a staging file is not harmless", []auditLine{{Node: "a", Epoch: 3, Op: "rename", Path: "/admin/f", From: "/admin/.udmg-staging.7.3", UnixNs: 205}}, 1, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var bad, late int
			for _, f := range (&auditChecker{}).judge(tc.lines, act) {
				if f.late {
					late++
				} else {
					bad++
				}
				t.Log(f.why)
			}
			if bad != tc.bad || late != tc.late {
				t.Errorf("bad=%d late=%d, want bad=%d late=%d", bad, late, tc.bad, tc.late)
			}
		})
	}
}
