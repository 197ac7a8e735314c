package emulator

import (
	"context"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	clb "github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/clb/v20180317"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common"
	"github.com/tencentcloud/tencentcloud-sdk-go/tencentcloud/common/profile"

	"clb-direct/cloud/fake"
)

var uuidRE = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

func TestSDKCall(t *testing.T) {
	_, addr := start(t, func(c *Config) { c.ListenersPerLoadBalancer = 7; c.BackendsPerListener = 9 })
	for name, c := range map[string]*clb.Client{
		"signed payload":   newClient(t, addr, testID, testKey),
		"unsigned payload": newClient(t, addr, testID, testKey, func(p *profile.ClientProfile) { p.UnsignedPayload = true }),
	} {
		t.Run(name, func(t *testing.T) {
			resp, err := c.DescribeQuota(clb.NewDescribeQuotaRequest())
			must(t, err)
			if id := *resp.Response.RequestId; !uuidRE.MatchString(id) {
				t.Errorf("RequestId %q is not a UUID", id)
			}
			got := map[string]int64{}
			for _, q := range resp.Response.QuotaSet {
				got[*q.QuotaId] = *q.QuotaLimit
			}
			if got["TOTAL_LISTENER_QUOTA"] != 7 || got["TOTAL_TARGET_BIND_QUOTA"] != 9 {
				t.Errorf("quotas %v, want TOTAL_LISTENER_QUOTA 7 and TOTAL_TARGET_BIND_QUOTA 9", got)
			}
		})
	}
}

func TestAuthFailures(t *testing.T) {
	_, addr := start(t, func(c *Config) { c.ExtraCredentials = map[string]string{"AKIDother": "other-key"} })

	wrongService := clb.NewDescribeQuotaRequest()
	// The SDK signs with the service of the request's API info: this one
	// says cvm in its credential scope.
	wrongService.WithApiInfo("cvm", clb.APIVersion, "DescribeQuota")

	cpf := profile.NewClientProfile()
	cpf.HttpProfile.Endpoint, cpf.HttpProfile.Scheme = addr, "http"
	otherRegion, err := clb.NewClient(common.NewCredential(testID, testKey), "ap-beijing", cpf)
	must(t, err)

	cases := []struct {
		name string
		call func() error
		code string
	}{
		{"wrong key", func() error {
			_, err := newClient(t, addr, testID, "not-the-key").DescribeQuota(nil)
			return err
		}, "AuthFailure.SignatureFailure"},
		{"key of another id", func() error {
			_, err := newClient(t, addr, "AKIDother", testKey).DescribeQuota(nil)
			return err
		}, "AuthFailure.SignatureFailure"},
		{"unknown id", func() error {
			_, err := newClient(t, addr, "AKIDnobody", testKey).DescribeQuota(nil)
			return err
		}, "AuthFailure.SecretIdNotFound"},
		{"wrong service in scope", func() error {
			return newClient(t, addr, testID, testKey).Send(wrongService, clb.NewDescribeQuotaResponse())
		}, "AuthFailure.SignatureFailure"},
		{"wrong region", func() error {
			_, err := otherRegion.DescribeQuota(nil)
			return err
		}, "UnsupportedRegion"},
		{"extra credential works", func() error {
			_, err := newClient(t, addr, "AKIDother", "other-key").DescribeQuota(nil)
			return err
		}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			err := tc.call()
			if tc.code == "" {
				must(t, err)
				return
			}
			wantCode(t, err, tc.code)
		})
	}
}

func TestHandSignedRequests(t *testing.T) {
	_, addr := start(t, nil)
	now := time.Now()
	cases := []struct {
		name string
		call rawCall
		code string
	}{
		{"fresh, correctly signed", rawCall{action: "DescribeQuota", body: "{}"}, ""},
		{"replayed 10 minutes later", rawCall{action: "DescribeQuota", body: "{}", timestamp: now.Add(-10 * time.Minute)}, "AuthFailure.SignatureExpire"},
		{"from 10 minutes in the future", rawCall{action: "DescribeQuota", body: "{}", timestamp: now.Add(10 * time.Minute)}, "AuthFailure.SignatureExpire"},
		{"4 minutes old", rawCall{action: "DescribeQuota", body: "{}", timestamp: now.Add(-4 * time.Minute)}, ""},
		{"wrong service in scope", rawCall{action: "DescribeQuota", body: "{}", service: "cvm"}, "AuthFailure.SignatureFailure"},
		{"body changed after signing", rawCall{action: "DescribeTaskStatus", body: `{"TaskId":"a"}`, tamper: `{"TaskId":"b"}`}, "AuthFailure.SignatureFailure"},
		{"unknown action", rawCall{action: "NoSuchAction", body: "{}"}, "InvalidAction"},
		{"not implemented action", rawCall{action: "RegisterTargets", body: "{}"}, "InvalidAction"},
		{"no action", rawCall{body: "{}"}, "MissingParameter"},
		{"wrong version", rawCall{action: "DescribeQuota", body: "{}", version: "2017-03-12"}, "NoSuchVersion"},
		{"malformed JSON", rawCall{action: "DescribeTaskStatus", body: `{"TaskId":`}, "InvalidParameter"},
		{"not an object", rawCall{action: "DescribeTaskStatus", body: `["TaskId"]`}, "InvalidParameter"},
		{"wrong type", rawCall{action: "DescribeTaskStatus", body: `{"TaskId":5}`}, "InvalidParameter"},
		{"unknown parameter", rawCall{action: "DescribeTaskStatus", body: `{"TaskId":"x","Nope":1}`}, "UnknownParameter"},
		{"parameter case matters", rawCall{action: "DescribeTaskStatus", body: `{"taskid":"x"}`}, "UnknownParameter"},
		{"unknown nested parameter", rawCall{action: "DescribeLoadBalancers", body: `{"Filters":[{"Name":"tag:a","Values":["b"],"Nope":1}]}`}, "UnknownParameter"},
		{"parameter not implemented", rawCall{action: "DescribeLoadBalancers", body: `{"WithRs":1}`}, "InvalidParameter"},
		{"parameter ignored", rawCall{action: "DescribeLoadBalancers", body: `{"OrderBy":"CreateTime"}`}, ""},
		{"missing parameter", rawCall{action: "DescribeTaskStatus", body: `{}`}, "MissingParameter"},
		{"empty body is no parameters", rawCall{action: "DescribeQuota", body: ""}, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tc.call.addr = addr
			status, env := tc.call.do(t)
			if status != http.StatusOK {
				t.Errorf("HTTP status %d, want 200 whatever the outcome", status)
			}
			if got := errorCode(env); got != tc.code {
				t.Errorf("error code %q, want %q; response %v", got, tc.code, env)
			}
		})
	}
}

func TestMissingParameterThroughSDK(t *testing.T) {
	_, addr := start(t, nil)
	_, err := newClient(t, addr, testID, testKey).DescribeTaskStatus(clb.NewDescribeTaskStatusRequest())
	wantCode(t, err, "MissingParameter")

	unknown := clb.NewDescribeQuotaRequest()
	unknown.WithApiInfo("clb", clb.APIVersion, "DescribeNothing")
	wantCode(t, newClient(t, addr, testID, testKey).Send(unknown, clb.NewDescribeQuotaResponse()), "InvalidAction")
}

func TestRequestsWithoutSignature(t *testing.T) {
	_, addr := start(t, nil)
	cases := []struct {
		name, method, authz, code string
	}{
		{"no Authorization", http.MethodPost, "", "AuthFailure.InvalidAuthorization"},
		{"garbage Authorization", http.MethodPost, "Basic dXNlcjpwYXNz", "AuthFailure.InvalidAuthorization"},
		{"incomplete Authorization", http.MethodPost, "TC3-HMAC-SHA256 Credential=" + testID, "AuthFailure.InvalidAuthorization"},
		{"GET", http.MethodGet, "", "UnsupportedProtocol"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(tc.method, "http://"+addr+"/", strings.NewReader("{}"))
			must(t, err)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("X-TC-Action", "DescribeQuota")
			req.Header.Set("X-TC-Timestamp", fmt.Sprint(time.Now().Unix()))
			if tc.authz != "" {
				req.Header.Set("Authorization", tc.authz)
			}
			status, env := send(t, req)
			if status != http.StatusOK || errorCode(env) != tc.code {
				t.Errorf("HTTP %d code %q, want 200 %q", status, errorCode(env), tc.code)
			}
		})
	}
}

func TestPanicIsAnInternalError(t *testing.T) {
	srv := newServer(t, nil)
	srv.actions["Boom"] = &action{
		known: map[string]bool{}, supported: map[string]bool{}, ignored: map[string]bool{},
		serve: func(context.Context, *Server, *fake.Cloud, []byte) (any, string, error) { panic("boom") },
	}
	addr := serve(t, srv)
	status, env := rawCall{addr: addr, action: "Boom", body: "{}"}.do(t)
	if status != http.StatusOK || errorCode(env) != "InternalError" {
		t.Errorf("HTTP %d code %q, want 200 InternalError", status, errorCode(env))
	}
	if _, err := newClient(t, addr, testID, testKey).DescribeQuota(nil); err != nil {
		t.Errorf("the server does not serve after a panic: %v", err)
	}
}
