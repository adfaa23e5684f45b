// Command upstream_client reads observer.Observer/GetFlows the way upstream's Go hubble CLI does:
// grpc-go, one GetFlowsResponse per gRPC message. It does not decode the responses (a raw codec
// keeps the bytes), so what it measures is the server's stream. Used by benchmarks/bench_relay.py.
//
// Usage: upstream_client ADDRESS REQUEST_HEX [nodigest]
// It connects, prints "ready", waits for a line on stdin, reads the whole stream and prints
// "<responses> <seconds> <unix time at the last response> <sha256 of the responses>" (each response
// hashed as its 4-byte big-endian length and its bytes, so tests can compare streams; "-" with
// nodigest, which benchmarks use: hashing is a quarter of the client's CPU), then a line
// "phases <connect s> <first response s> <last response s> <stream CPU s> <process CPU s> <run wait s>":
// the time to connect (before "ready"), the time from the start of the call to its first and last
// response, the user+system CPU this process used during the call and in all, and how long its
// threads waited for a CPU while runnable during the call (Linux schedstat; benchmarks/bench_relay.py).
package main

import (
	"bufio"
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc"
)

type rawCodec struct{}

func (rawCodec) Marshal(v interface{}) ([]byte, error) { return *(v.(*[]byte)), nil }

func (rawCodec) Unmarshal(data []byte, v interface{}) error {
	*(v.(*[]byte)) = data
	return nil
}

func (rawCodec) Name() string { return "proto" }

// cpuSeconds is the user+system CPU this process has used so far.
func cpuSeconds() float64 {
	var usage syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &usage); err != nil {
		return 0
	}
	return float64(usage.Utime.Nano()+usage.Stime.Nano()) / 1e9
}

// runWaitSeconds is how long this process's threads have waited on a run queue (Linux schedstat),
// 0 when the kernel does not say.
func runWaitSeconds() float64 {
	paths, _ := filepath.Glob("/proc/self/task/*/schedstat")
	total := 0.0
	for _, path := range paths {
		data, err := os.ReadFile(path)
		if err != nil {
			continue
		}
		fields := strings.Fields(string(data))
		if len(fields) < 2 {
			continue
		}
		if ns, err := strconv.ParseFloat(fields[1], 64); err == nil {
			total += ns / 1e9
		}
	}
	return total
}

func main() {
	if len(os.Args) < 3 || len(os.Args) > 4 || (len(os.Args) == 4 && os.Args[3] != "nodigest") {
		fmt.Fprintln(os.Stderr, "usage: upstream_client ADDRESS REQUEST_HEX [nodigest]")
		os.Exit(2)
	}
	hashing := len(os.Args) == 3
	request, err := hex.DecodeString(os.Args[2])
	if err != nil {
		fmt.Fprintln(os.Stderr, "bad request hex:", err)
		os.Exit(2)
	}
	dialStart := time.Now()
	dialCtx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := grpc.DialContext(dialCtx, os.Args[1], grpc.WithInsecure(), grpc.WithBlock(),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(64<<20)))
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		os.Exit(1)
	}
	defer conn.Close()
	connected := time.Since(dialStart)
	fmt.Println("ready")
	if _, err := bufio.NewReader(os.Stdin).ReadString('\n'); err != nil {
		os.Exit(1)
	}
	start := time.Now()
	cpuStart := cpuSeconds()
	waitStart := runWaitSeconds()
	desc := &grpc.StreamDesc{StreamName: "GetFlows", ServerStreams: true}
	stream, err := conn.NewStream(context.Background(), desc, "/observer.Observer/GetFlows",
		grpc.ForceCodec(rawCodec{}))
	if err != nil {
		fmt.Fprintln(os.Stderr, "stream:", err)
		os.Exit(1)
	}
	if err := stream.SendMsg(&request); err != nil {
		fmt.Fprintln(os.Stderr, "send:", err)
		os.Exit(1)
	}
	if err := stream.CloseSend(); err != nil {
		fmt.Fprintln(os.Stderr, "close send:", err)
		os.Exit(1)
	}
	count := 0
	var firstAt time.Duration
	digest := sha256.New()
	var size [4]byte
	for {
		var message []byte
		err := stream.RecvMsg(&message)
		if err == io.EOF {
			break
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "recv:", err)
			os.Exit(1)
		}
		if count == 0 {
			firstAt = time.Since(start)
		}
		count++
		if hashing {
			binary.BigEndian.PutUint32(size[:], uint32(len(message)))
			digest.Write(size[:])
			digest.Write(message)
		}
	}
	end := time.Now()
	cpuEnd := cpuSeconds()
	waitEnd := runWaitSeconds()
	sum := "-"
	if hashing {
		sum = hex.EncodeToString(digest.Sum(nil))
	}
	fmt.Printf("%d %.6f %.6f %s\n", count, end.Sub(start).Seconds(), float64(end.UnixNano())/1e9, sum)
	fmt.Printf("phases %.6f %.6f %.6f %.6f %.6f %.6f\n", connected.Seconds(), firstAt.Seconds(),
		end.Sub(start).Seconds(), cpuEnd-cpuStart, cpuEnd, waitEnd-waitStart)
}
