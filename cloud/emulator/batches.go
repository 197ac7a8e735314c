package emulator

import (
	"context"
	"errors"
	"sync"
	"time"

	"clb-direct/cloud"
)

// BatchRecord is one batch call on targets as it reached the account
// (GET /admin/batches): which targets it named, not only how many, so a
// test can tell exactly which backends were deregistered, when and by whom.
type BatchRecord struct {
	// Seq numbers the records from 1, in order of arrival.
	Seq            int
	Time           time.Time
	Action         string
	Client         string
	LoadBalancerID string
	Targets        []BatchTargetRecord
	// ErrorCode is the call's error; FailedListenerIDs the listeners a
	// batch failed for (FailListenerIdSet). A task that fails later is not
	// shown here.
	ErrorCode         string   `json:",omitempty"`
	FailedListenerIDs []string `json:",omitempty"`
	TaskID            string   `json:",omitempty"`
}

// BatchTargetRecord is one target of a batch call, with the name its
// listener had when the call arrived ("" for a listener that did not exist).
type BatchTargetRecord struct {
	ListenerID   string
	ListenerName string
	IP           string `json:",omitempty"`
	InstanceID   string `json:",omitempty"`
	Port         int32
	Weight       int32
}

type batchLog struct {
	mu      sync.Mutex
	seq     int
	records []*BatchRecord
}

// recordBatch logs a batch call as it arrives at the account.
func (s *Server) recordBatch(ctx context.Context, action, lbID string, backends []cloud.ListenerBackend) *BatchRecord {
	names := map[string]string{}
	if lb, ok := findLoadBalancer(s.cloud.Snapshot(), lbID); ok {
		for _, l := range lb.Listeners {
			names[l.ID] = l.Name
		}
	}
	rec := &BatchRecord{Time: time.Now(), Action: action, Client: clientOf(ctx), LoadBalancerID: lbID}
	for _, b := range backends {
		rec.Targets = append(rec.Targets, BatchTargetRecord{
			ListenerID: b.ListenerID, ListenerName: names[b.ListenerID],
			IP: b.IP, InstanceID: b.InstanceID, Port: b.Port, Weight: b.Weight,
		})
	}
	s.batches.mu.Lock()
	defer s.batches.mu.Unlock()
	s.batches.seq++
	rec.Seq = s.batches.seq
	s.batches.records = append(s.batches.records, rec)
	return rec
}

// finishBatch records how a logged batch call went, and counts its partial
// failure.
func (s *Server) finishBatch(rec *BatchRecord, taskID string, failed []string, err error) {
	s.wire.count(InjectedPartialFailure, len(failed))
	s.batches.mu.Lock()
	defer s.batches.mu.Unlock()
	rec.TaskID = taskID
	rec.FailedListenerIDs = failed
	var ce *cloud.Error
	switch {
	case errors.As(err, &ce):
		rec.ErrorCode = ce.Code
	case err != nil:
		rec.ErrorCode = cloud.CodeInternalError
	}
}

// Batches returns the batch log from the record with sequence number since
// on (0: all), oldest first.
func (s *Server) Batches(since int) []BatchRecord {
	s.batches.mu.Lock()
	defer s.batches.mu.Unlock()
	out := []BatchRecord{}
	for _, rec := range s.batches.records {
		if rec.Seq < since {
			continue
		}
		r := *rec
		r.Targets = append([]BatchTargetRecord(nil), rec.Targets...)
		r.FailedListenerIDs = append([]string(nil), rec.FailedListenerIDs...)
		out = append(out, r)
	}
	return out
}

// ResetBatches empties the batch log; sequence numbers go on.
func (s *Server) ResetBatches() {
	s.batches.mu.Lock()
	defer s.batches.mu.Unlock()
	s.batches.records = nil
}
