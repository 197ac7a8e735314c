package emulator

import (
	"bytes"
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"clb-direct/cloud"
)

// fuzzActions are the actions the emulator implements, sorted, so that a
// fuzzed index reaches each of them.
var fuzzActions = slices.Sorted(maps.Keys(actionTable()))

// signedRequest is a POST of body to action, signed for testID as the SDK
// signs it (see rawCall in helpers_test.go for the same, written out).
func signedRequest(action string, body []byte, now time.Time) *http.Request {
	r := httptest.NewRequest(http.MethodPost, "/", bytes.NewReader(body))
	r.Header.Set("Content-Type", "application/json")
	r.Header.Set("X-TC-Action", action)
	r.Header.Set("X-TC-Version", apiVersion)
	r.Header.Set("X-TC-Region", testRegion)
	ts := strconv.FormatInt(now.Unix(), 10)
	r.Header.Set("X-TC-Timestamp", ts)
	date := now.UTC().Format(time.DateOnly)
	canonical := strings.Join([]string{
		http.MethodPost, "/", "", "content-type:application/json\nhost:" + strings.ToLower(r.Host) + "\n", "content-type;host", sha256Hex(body),
	}, "\n")
	scope := date + "/" + service + "/" + tc3Terminal
	toSign := strings.Join([]string{tc3Algorithm, ts, scope, sha256Hex([]byte(canonical))}, "\n")
	sig := hex.EncodeToString(hmacSHA256(signingKey(testKey, date, service), toSign))
	r.Header.Set("Authorization", fmt.Sprintf("%s Credential=%s/%s, SignedHeaders=content-type;host, Signature=%s", tc3Algorithm, testID, scope, sig))
	return r
}

// FuzzDecodeRequest sends arbitrary bodies, correctly signed, to any action
// (one of the emulator's, chosen by actionIndex, or the fuzzed name) of a
// fresh emulator holding a CLB lb-00000001 with a TCP:80 listener
// lbl-00000001 and one target, so that the fuzzer reaches past "not found".
// Whatever the body, the answer must be HTTP 200 with the API's envelope
// {"Response": {..., "RequestId": "..."}}; an error in it has a code and a
// message and is never InternalError (what a panic in a handler becomes);
// an unknown action is InvalidAction, and a body that is not a JSON object
// is InvalidParameter.
func FuzzDecodeRequest(f *testing.F) {
	add := func(action string, body string) {
		i := slices.Index(fuzzActions, action)
		if i < 0 {
			f.Add(uint8(255), action, []byte(body))
			return
		}
		f.Add(uint8(i), "", []byte(body))
	}
	add("DescribeLoadBalancers", "")
	add("DescribeLoadBalancers", "{}")
	add("DescribeLoadBalancers", "null")
	add("DescribeLoadBalancers", "[]")
	add("DescribeLoadBalancers", `{"LoadBalancerIds":["lb-00000001"],"Offset":0,"Limit":100}`)
	add("DescribeLoadBalancers", `{"Offset":9223372036854775807,"Limit":20}`)
	add("DescribeLoadBalancers", `{"LoadBalancerIds":["lb-00000001"],"Filters":[{"Name":"tag:k","Values":["v"]}],"Offset":9223372036854775807}`)
	add("DescribeLoadBalancers", `{"Offset":-1,"Limit":1e3}`)
	add("DescribeLoadBalancers", `{"Offset":18446744073709551616}`)
	add("DescribeLoadBalancers", `{"Filters":[null,{"Name":null,"Values":[null]}]}`)
	add("DescribeLoadBalancers", `{"loadbalancerids":["lb-00000001"]}`)
	add("DescribeLoadBalancers", `{"LoadBalancerIds":"lb-00000001"}`)
	add("DescribeLoadBalancers", `{"LoadBalancerIds":[]}{"x":1}`)
	add("CreateLoadBalancer", `{"LoadBalancerType":"OPEN","LoadBalancerName":"é名","Tags":[{"TagKey":"a","TagValue":"b"}],"InternetAccessible":{"InternetMaxBandwidthOut":10}}`)
	add("CreateLoadBalancer", `{"LoadBalancerType":"INTERNAL","SubnetId":"subnet-1","Number":1,"ClientToken":"`+strings.Repeat("x", 65)+`"}`)
	add("CreateLoadBalancer", `{"LoadBalancerType":"OPEN","InternetAccessible":{"internetmaxbandwidthout":10,"Nested":{"a":[{"b":null}]}}}`)
	add("CreateLoadBalancer", `{"LoadBalancerType":"OPEN","Tags":[null]}`)
	add("ModifyLoadBalancerAttributes", `{"LoadBalancerId":"lb-00000001","InternetChargeInfo":{"InternetMaxBandwidthOut":-9223372036854775808}}`)
	add("DeleteLoadBalancer", `{"LoadBalancerIds":["lb-00000001","lb-00000001"]}`)
	add("DescribeListeners", `{"LoadBalancerId":"lb-00000001","ListenerIds":[null,"lbl-00000001"],"Protocol":"TCP","Port":80}`)
	add("CreateListener", `{"LoadBalancerId":"lb-00000001","Ports":[2147483648],"Protocol":"TCP"}`)
	add("CreateListener", `{"LoadBalancerId":"lb-00000001","Ports":[null],"Protocol":"UDP","ListenerNames":["a","b"]}`)
	add("CreateListener", `{"LoadBalancerId":"lb-00000001","Ports":[8080],"Protocol":"TCP","HealthCheck":{"HealthSwitch":2,"TimeOut":0}}`)
	add("ModifyListener", `{"LoadBalancerId":"lb-00000001","ListenerId":"lbl-00000001","HealthCheck":{"HealthSwitch":1,"IntervalTime":9223372036854775807,"CheckPort":1}}`)
	add("ModifyListener", `{"LoadBalancerId":"lb-00000001","ListenerId":"lbl-00000001","SessionExpireTime":30,"Scheduler":"LEAST_CONN"}`)
	add("DeleteListener", `{"LoadBalancerId":"lb-00000001","ListenerId":"lbl-00000001"}`)
	add("DescribeTargets", `{"LoadBalancerId":"lb-00000001","Port":-1}`)
	add("BatchRegisterTargets", `{"LoadBalancerId":"lb-00000001","Targets":[{"ListenerId":"lbl-00000001","EniIp":"10.0.0.2","Port":8080,"Weight":101}]}`)
	add("BatchRegisterTargets", `{"LoadBalancerId":"lb-00000001","Targets":[null,{"ListenerId":"lbl-00000001","Port":-2147483649}]}`)
	add("BatchDeregisterTargets", `{"LoadBalancerId":"lb-00000001","Targets":[{"ListenerId":"lbl-00000001","EniIp":"10.0.0.1","Port":8080}]}`)
	add("BatchModifyTargetWeight", `{"LoadBalancerId":"lb-00000001","ModifyList":[{"ListenerId":"lbl-00000001","Targets":[{"EniIp":"10.0.0.1","Port":8080}],"Weight":0}]}`)
	add("BatchModifyTargetWeight", `{"LoadBalancerId":"lb-00000001","ModifyList":[{"ListenerId":"lbl-00000001","Targets":[null]}]}`)
	add("DescribeTargetHealth", `{"LoadBalancerIds":["lb-00000001","lb-00000001","lb-missing"]}`)
	add("DescribeTaskStatus", `{"TaskId":""}`)
	add("DescribeQuota", `{"Unknown":true}`)
	add("", "{}")
	add("NoSuchAction", "{}")
	add("DescribeLoadBalancers\x00", "{}")
	add("DescribeLoadBalancers", "\xff\xfe")
	add("DescribeLoadBalancers", `{"LoadBalancerIds":["\ud800"]}`)
	add("DescribeLoadBalancers", strings.Repeat("[", 10000))
	f.Fuzz(func(t *testing.T, actionIndex uint8, rawAction string, body []byte) {
		action := rawAction
		if int(actionIndex) < len(fuzzActions) {
			action = fuzzActions[actionIndex]
		}
		if strings.ContainsAny(action, "\r\n\x00") || strings.TrimSpace(action) != action {
			// No HTTP client can send such a header value.
			return
		}
		srv, err := New(Config{SecretID: testID, SecretKey: testKey, Region: testRegion})
		if err != nil {
			t.Fatal(err)
		}
		defer srv.Close()
		ctx := context.Background()
		lb, err := srv.Cloud().CreateLoadBalancer(ctx, cloud.LoadBalancerSpec{Name: "fuzz"})
		if err != nil {
			t.Fatal(err)
		}
		l, err := srv.Cloud().CreateListener(ctx, lb.ID, cloud.ListenerSpec{Name: "fuzz", Protocol: cloud.ProtocolTCP, Port: 80})
		if err != nil {
			t.Fatal(err)
		}
		if err := srv.Cloud().RegisterBackends(ctx, lb.ID, []cloud.ListenerBackend{{ListenerID: l.ID, Backend: cloud.Backend{IP: "10.0.0.1", Port: 8080, Weight: 10}}}); err != nil {
			t.Fatal(err)
		}

		w := httptest.NewRecorder()
		srv.Handler().ServeHTTP(w, signedRequest(action, body, time.Now()))

		if w.Code != http.StatusOK {
			t.Fatalf("%s %q: HTTP %d, want 200 with the envelope: %s", action, body, w.Code, w.Body)
		}
		var env struct {
			Response *struct {
				Error *struct {
					Code    *string
					Message *string
				}
				RequestID *string `json:"RequestId"`
			}
		}
		dec := json.NewDecoder(w.Body)
		if err := dec.Decode(&env); err != nil || dec.More() || env.Response == nil {
			t.Fatalf("%s %q: the answer is not the API's envelope (%v): %s", action, body, err, w.Body)
		}
		if id := env.Response.RequestID; id == nil || *id == "" {
			t.Errorf("%s %q: the answer has no RequestId", action, body)
		}
		_, known := srv.actions[action]
		trimmed := bytes.TrimSpace(body)
		var top map[string]json.RawMessage
		jsonObject := len(trimmed) == 0 || json.Unmarshal(trimmed, &top) == nil
		e := env.Response.Error
		if e == nil {
			switch {
			case !known:
				t.Fatalf("unknown action %q succeeded", action)
			case !jsonObject:
				t.Fatalf("%s %q: a body that is not a JSON object succeeded", action, body)
			}
			return
		}
		if e.Code == nil || *e.Code == "" || e.Message == nil || *e.Message == "" {
			t.Fatalf("%s %q: an error without a code or message: %+v", action, body, e)
		}
		switch code := *e.Code; {
		case code == cloud.CodeInternalError:
			t.Fatalf("%s %q: %s: %s", action, body, code, *e.Message)
		case action == "" && code != cloud.CodeMissingParameter:
			t.Errorf("no action: code %s, want %s", code, cloud.CodeMissingParameter)
		case action != "" && !known && code != "InvalidAction":
			t.Errorf("unknown action %q: code %s, want InvalidAction", action, code)
		case known && !jsonObject && code != cloud.CodeInvalidParameter:
			t.Errorf("%s %q: a body that is not a JSON object: code %s, want %s", action, body, code, cloud.CodeInvalidParameter)
		}
	})
}
