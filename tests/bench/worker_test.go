package main

import "testing"

func TestParseMemStatus(t *testing.T) {
	for _, tc := range []struct {
		name    string
		status  string
		want    memStatus
		wantErr bool
	}{
		{
			name:   "both lines",
			status: "Name:\tlazyfsd\nVmPeak:\t 2000 kB\nVmHWM:\t  353000 kB\nVmRSS:\t  352000 kB\nThreads:\t9\n",
			want:   memStatus{VmRSSKiB: 352000, VmHWMKiB: 353000},
		},
		{name: "kernel thread without Vm lines", status: "Name:\tkthreadd\nThreads:\t1\n", wantErr: true},
		{name: "unexpected unit", status: "VmHWM:\t1 MB\nVmRSS:\t1 kB\n", wantErr: true},
		{name: "not a number", status: "VmHWM:\tx kB\nVmRSS:\t1 kB\n", wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := parseMemStatus([]byte(tc.status))
			if (err != nil) != tc.wantErr {
				t.Fatalf("err = %v, want error: %v", err, tc.wantErr)
			}
			if !tc.wantErr && got != tc.want {
				t.Fatalf("got %+v, want %+v", got, tc.want)
			}
		})
	}
}
