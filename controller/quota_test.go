package controller

import (
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"

	"clb-direct/cloud"
)

func TestFitQuota(t *testing.T) {
	uid := unitUID
	tcp := func(port int32, backends ...cloud.Backend) DesiredListener {
		return mkListener(cloud.ProtocolTCP, port, backends...)
	}
	own := func(id string, port int32) cloud.Listener {
		return cloud.Listener{ID: id, ListenerSpec: cloud.ListenerSpec{Name: listenerName(uid, ListenerKey{cloud.ProtocolTCP, port}), Protocol: cloud.ProtocolTCP, Port: port}}
	}
	foreign := cloud.Listener{ID: "lbl-f", ListenerSpec: cloud.ListenerSpec{Name: "theirs", Protocol: cloud.ProtocolTCP, Port: 9}}
	b1, b2, b3 := mkBackend("10.0.0.1", 80), mkBackend("10.0.0.2", 80), mkBackend("10.0.0.3", 80)
	tests := []struct {
		name         string
		desired      []DesiredListener
		observed     ObservedState
		quota        cloud.Quota
		want         []DesiredListener
		wantProblems []string
	}{
		{
			name:    "fits",
			desired: []DesiredListener{tcp(80, b1), tcp(81, b2)},
			quota:   cloud.Quota{ListenersPerLoadBalancer: 2, BackendsPerListener: 1},
			want:    []DesiredListener{tcp(80, b1), tcp(81, b2)},
		},
		{
			name:         "listeners: existing ones kept first, foreign ones count",
			desired:      []DesiredListener{tcp(80), tcp(81), tcp(82)},
			observed:     ObservedState{Listeners: []cloud.Listener{foreign, own("lbl-82", 82)}},
			quota:        cloud.Quota{ListenersPerLoadBalancer: 3},
			want:         []DesiredListener{tcp(80), tcp(82)},
			wantProblems: []string{"allows 3 listeners", "1 are not this Service's", "TCP:81"},
		},
		{
			name:         "backends: registered ones kept first",
			desired:      []DesiredListener{tcp(80, b1, b2, b3)},
			observed:     ObservedState{Listeners: []cloud.Listener{own("lbl-80", 80)}, Backends: map[string][]cloud.Backend{"lbl-80": {b3}}},
			quota:        cloud.Quota{BackendsPerListener: 2},
			want:         []DesiredListener{tcp(80, b1, b3)},
			wantProblems: []string{"TCP:80 allows 2 backends", "10.0.0.2:80"},
		},
		{
			name:         "no room at all",
			desired:      []DesiredListener{tcp(80)},
			observed:     ObservedState{Listeners: []cloud.Listener{foreign}},
			quota:        cloud.Quota{ListenersPerLoadBalancer: 1},
			want:         []DesiredListener{},
			wantProblems: []string{"TCP:80"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, problems := fitQuota(DesiredState{Listeners: tt.desired}, tt.observed, uid, tt.quota)
			if diff := cmp.Diff(tt.want, got.Listeners, cmp.Comparer(func(a, b []DesiredListener) bool { return len(a) == 0 && len(b) == 0 || cmp.Equal(a, b) })); diff != "" {
				t.Errorf("listeners (-want +got):\n%s", diff)
			}
			if len(problems) != min(len(tt.wantProblems), 1) {
				t.Fatalf("problems %q, want one containing %q", problems, tt.wantProblems)
			}
			for _, fragment := range tt.wantProblems {
				if !strings.Contains(problems[0], fragment) {
					t.Errorf("problem %q lacks %q", problems[0], fragment)
				}
			}
		})
	}
}
