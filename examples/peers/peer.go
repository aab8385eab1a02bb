// A Go peer for buffstreams-rs's interop tests (examples/tests/interop), standard library only.
//
// With -format buffstreams it frames exactly as Go BuffStreams v2 does: the length written by
// binary.PutVarint into a zeroed header of the width BuffStreams derives from MaxMessageSize,
// read back with binary.Varint. With -format uvarint it frames with binary.PutUvarint and reads
// with binary.ReadUvarint (Go's protodelim framing: the Varint64 header).
//
//	peer -format F -max M write HOST:PORT SPEC   one connection; per SPEC line:
//	                                             `frame PAYLOAD` (hex, `-` for empty) a message,
//	                                             `raw HEX` bytes as they are; then closes.
//	                                             Prints `wrote N` or `error after N: WHY`.
//	peer -format F -max M read                   listens on 127.0.0.1, prints `listening PORT`,
//	                                             accepts one connection and prints `frame PAYLOAD`
//	                                             per message, then `end` or `error KIND: WHY`.
package main

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"flag"
	"fmt"
	"io"
	"math"
	"net"
	"os"
	"strings"
)

// headerWidth is BuffStreams v2's messageSizeToBitLength.
func headerWidth(maxMessageSize int) int {
	return int(math.Ceil((math.Floor(math.Log2(float64(maxMessageSize)))+1)/8.0)) + 1
}

func unhex(field string) []byte {
	if field == "-" {
		return nil
	}
	b, err := hex.DecodeString(field)
	if err != nil {
		panic(err)
	}
	return b
}

func frame(format string, max int, payload []byte) []byte {
	if format == "buffstreams" {
		// BuffStreams v2's intToByteArray, then the payload appended.
		header := make([]byte, headerWidth(max))
		binary.PutVarint(header, int64(len(payload)))
		return append(header, payload...)
	}
	return append(binary.AppendUvarint(nil, uint64(len(payload))), payload...)
}

func write(format string, max int, addr, specPath string) {
	spec, err := os.ReadFile(specPath)
	if err != nil {
		panic(err)
	}
	done := 0
	conn, err := net.Dial("tcp", addr)
	if err == nil {
		w := bufio.NewWriterSize(conn, 1<<16)
		for _, line := range strings.Split(strings.TrimSpace(string(spec)), "\n") {
			f := strings.Fields(line)
			var out []byte
			switch f[0] {
			case "frame":
				out = frame(format, max, unhex(f[1]))
			case "raw":
				out = unhex(f[1])
			default:
				panic("bad spec line " + line)
			}
			if _, err = w.Write(out); err != nil {
				break
			}
			done++
		}
		if err == nil {
			err = w.Flush()
		}
		conn.Close()
	}
	if err != nil {
		fmt.Printf("error after %d: %v\n", done, err)
		return
	}
	fmt.Printf("wrote %d\n", done)
}

// next reads one message; (nil, nil) at a clean end between messages.
func next(format string, max int, r *bufio.Reader) ([]byte, error) {
	var size int64
	if format == "buffstreams" {
		// BuffStreams v2's TCPConn.Read: the whole header, then binary.Varint over it.
		header := make([]byte, headerWidth(max))
		if _, err := io.ReadFull(r, header); err == io.EOF {
			return nil, nil
		} else if err != nil {
			return nil, fmt.Errorf("eof: inside a header: %w", err)
		}
		v, n := binary.Varint(header)
		if n == 0 {
			return nil, errors.New("varint: does not end inside the header")
		} else if n < 0 {
			return nil, errors.New("varint: overflow")
		} else if v < 0 {
			return nil, fmt.Errorf("negative length %d", v)
		}
		size = v
	} else {
		v, err := binary.ReadUvarint(r)
		if err == io.EOF {
			return nil, nil
		} else if err == io.ErrUnexpectedEOF {
			return nil, fmt.Errorf("eof: inside a header")
		} else if err != nil {
			return nil, fmt.Errorf("varint: %w", err)
		}
		if v > math.MaxInt64 {
			return nil, fmt.Errorf("too long: %d", v)
		}
		size = int64(v)
	}
	// BuffStreams slices its buffer of MaxMessageSize bytes here (b[:msgLength]), which
	// panics beyond it; this peer says so instead.
	if size > int64(max) {
		return nil, fmt.Errorf("too long: %d > %d", size, max)
	}
	payload := make([]byte, size)
	if n, err := io.ReadFull(r, payload); err != nil {
		return nil, fmt.Errorf("eof: %d of %d bytes", n, size)
	}
	return payload, nil
}

func read(format string, max int) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	fmt.Printf("listening %d\n", ln.Addr().(*net.TCPAddr).Port)
	conn, err := ln.Accept()
	if err != nil {
		panic(err)
	}
	r := bufio.NewReaderSize(conn, 1<<16)
	out := bufio.NewWriterSize(os.Stdout, 1<<16)
	defer out.Flush()
	for {
		payload, err := next(format, max, r)
		if err != nil {
			fmt.Fprintf(out, "error %v\n", err)
			return
		}
		if payload == nil {
			fmt.Fprintln(out, "end")
			return
		}
		if len(payload) == 0 {
			fmt.Fprintln(out, "frame -")
		} else {
			fmt.Fprintf(out, "frame %s\n", hex.EncodeToString(payload))
		}
	}
}

func main() {
	format := flag.String("format", "buffstreams", "buffstreams (BuffStreams v2 headers) or uvarint")
	max := flag.Int("max", 4096, "MaxMessageSize: the BuffStreams header width, and the longest message read")
	flag.Parse()
	args := flag.Args()
	if *format != "buffstreams" && *format != "uvarint" {
		fmt.Fprintln(os.Stderr, "-format: buffstreams or uvarint")
		os.Exit(2)
	}
	switch {
	case len(args) == 3 && args[0] == "write":
		write(*format, *max, args[1], args[2])
	case len(args) == 1 && args[0] == "read":
		read(*format, *max)
	default:
		fmt.Fprintln(os.Stderr, "usage: peer -format F -max M write HOST:PORT SPEC | read")
		os.Exit(2)
	}
}
