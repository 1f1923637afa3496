package version

import (
	"runtime"
	"runtime/debug"
	"testing"
)

func TestLine(t *testing.T) {
	for _, tc := range []struct {
		name string
		bi   debug.BuildInfo
		want string
	}{
		{"nothing recorded", debug.BuildInfo{Main: debug.Module{Version: "(devel)"}},
			"udmg-server version devel commit devel " + runtime.Version()},
		{"clean commit", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v1.2.3"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "ea48cf4ee525b1d8ed44bdbdd184386bf7c99e3c"}, {Key: "vcs.modified", Value: "false"}}},
			"udmg-server version v1.2.3 commit ea48cf4ee525b1d8ed44bdbdd184386bf7c99e3c go1.26.8"},
		{"modified tree", debug.BuildInfo{GoVersion: "go1.26.8", Main: debug.Module{Version: "v0.0.0-20261201101419-ea48cf4ee525+dirty"},
			Settings: []debug.BuildSetting{{Key: "vcs.revision", Value: "ea48cf4"}, {Key: "vcs.modified", Value: "true"}}},
			"udmg-server version v0.0.0-20261201101419-ea48cf4ee525+dirty commit ea48cf4 (modified) go1.26.8"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := FromBuildInfo(&tc.bi).Line("udmg-server"); got != tc.want {
				t.Errorf("got  %q\nwant %q", got, tc.want)
			}
		})
	}
}
