package loadtest

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseEnv(t *testing.T) {
	tests := []struct {
		scenario string
		in       string
		want     map[string]string
		wantErr  string
	}{
		{
			scenario: "the stack.env that omsd dev writes is read as is",
			in: "OMS_API_URL=http://127.0.0.1:41234\nOMS_ADMIN_KEY=adm_0123\nOMS_DATABASE_URL=postgres://u@127.0.0.1:5432/db?sslmode=disable\n" +
				"OMS_REDIS_URL=redis://127.0.0.1:6379\nOMS_KAFKA_BROKERS=127.0.0.1:9092,127.0.0.1:9093\n",
			want: map[string]string{
				"OMS_API_URL": "http://127.0.0.1:41234", "OMS_ADMIN_KEY": "adm_0123",
				"OMS_DATABASE_URL": "postgres://u@127.0.0.1:5432/db?sslmode=disable",
				"OMS_REDIS_URL":    "redis://127.0.0.1:6379", "OMS_KAFKA_BROKERS": "127.0.0.1:9092,127.0.0.1:9093",
			},
		},
		{
			scenario: "comments, blank lines, export, blanks and quotes are handled like a shell would",
			in:       "# a comment\n\n  export A = 1 \nB=\"two words\\n\"\nC='x=y'\nD=\nE=a=b\r\n",
			want:     map[string]string{"A": "1", "B": "two words\n", "C": "x=y", "D": "", "E": "a=b"},
		},
		{
			scenario: "a later duplicate wins",
			in:       "A=1\nA=2\n",
			want:     map[string]string{"A": "2"},
		},
		{
			scenario: "a line without = is an error naming the line",
			in:       "A=1\nnonsense\n",
			wantErr:  "line 2",
		},
		{
			scenario: "an empty key is an error",
			in:       "=value\n",
			wantErr:  "bad key",
		},
		{
			scenario: "a broken double-quoted value is an error",
			in:       "A=\"\\q\"\n",
			wantErr:  "quoted",
		},
	}
	for _, tt := range tests {
		t.Run(tt.scenario, func(t *testing.T) {
			got, err := ParseEnv(strings.NewReader(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got error %v, want one containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

func TestTargetFromEnvFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "stack.env")
	if err := os.WriteFile(path, []byte("OMS_API_URL=http://127.0.0.1:8080/\nOMS_ADMIN_KEY=k\nOMS_KAFKA_BROKERS= a:1 , ,b:2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	env, err := ReadEnvFile(path)
	if err != nil {
		t.Fatal(err)
	}
	tg := TargetFromEnv(func(k string) string { return env[k] })
	want := Target{APIURL: "http://127.0.0.1:8080", AdminKey: "k", Brokers: []string{"a:1", "b:2"}}
	if !reflect.DeepEqual(tg, want) {
		t.Errorf("got %+v, want %+v", tg, want)
	}
	if err := tg.Validate(); err != nil {
		t.Errorf("got %v, want a valid target", err)
	}
	if err := (Target{APIURL: "127.0.0.1:80"}).Validate(); err == nil || !strings.Contains(err.Error(), "admin key") || !strings.Contains(err.Error(), "http") {
		t.Errorf("got %v, want errors about the scheme and the admin key", err)
	}
	if _, err := ReadEnvFile(filepath.Join(t.TempDir(), "missing.env")); err == nil {
		t.Error("got no error for a missing file")
	}
}
