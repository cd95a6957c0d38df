package podwatch

import (
	"encoding/json"
	"testing"
)

// Done follows the pod's restartPolicy: only a termination kubelet will
// not undo ends the wrapper.
func TestDone(t *testing.T) {
	mk := func(policy, mainState string) *pod {
		var p pod
		src := `{"spec":{"restartPolicy":"` + policy + `","containers":[{"name":"main"},{"name":"side"}]},
		"status":{"containerStatuses":[{"name":"main","state":` + mainState + `},{"name":"side","state":{"running":{}}}]}}`
		if err := json.Unmarshal([]byte(src), &p); err != nil {
			t.Fatal(err)
		}
		return &p
	}
	ok0, fail1, running := `{"terminated":{"exitCode":0}}`, `{"terminated":{"exitCode":1}}`, `{"running":{"startedAt":"2026-11-25T10:00:00Z"}}`
	for _, c := range []struct {
		policy, state string
		want          bool
	}{
		{"Never", ok0, true}, {"Never", fail1, true}, {"Never", running, false},
		{"OnFailure", ok0, true}, {"OnFailure", fail1, false}, {"OnFailure", `{"waiting":{"reason":"CrashLoopBackOff"}}`, false},
		{"Always", ok0, false}, {"Always", fail1, false},
	} {
		if got, why := Done(mk(c.policy, c.state), []string{"main"}); got != c.want {
			t.Errorf("%s %s: %v (%s), want %v", c.policy, c.state, got, why, c.want)
		}
	}
	if got, _ := Done(mk("Never", ok0), []string{"main", "side"}); got {
		t.Error("done while side runs")
	}
	var noStatus pod
	if got, why := Done(&noStatus, []string{"main"}); got || why != "main has no status yet" {
		t.Errorf("no status: %v %s", got, why)
	}
}
