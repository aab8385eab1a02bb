// A Java protobuf peer for buffstreams-rs's interop tests (examples/tests/interop).
//
// It writes and reads `google.protobuf.Any` messages with protobuf-java's own
// `writeDelimitedTo` and `parseDelimitedFrom`, as a Java service does. Run it with the
// protobuf jar on the class path (`java -cp /usr/share/java/protobuf.jar Peer.java ...`).
//
//   Peer write HOST:PORT SPEC   one connection; per SPEC line:
//                               `msg URL VALUE` (hex value, `-` for empty) a message,
//                               `raw HEX` bytes as they are; then closes.
//                               Prints `wrote N` or `error after N: WHY`.
//   Peer read                   listens on 127.0.0.1, prints `listening PORT`, accepts one
//                               connection and prints `msg URL VALUE` per message, then
//                               `end` (clean end) or `error KIND: WHY`.

import com.google.protobuf.Any;
import com.google.protobuf.ByteString;
import com.google.protobuf.InvalidProtocolBufferException;
import java.io.BufferedInputStream;
import java.io.BufferedOutputStream;
import java.io.BufferedWriter;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.OutputStreamWriter;
import java.io.PrintStream;
import java.net.InetAddress;
import java.net.ServerSocket;
import java.net.Socket;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Paths;
import java.util.HexFormat;
import java.util.List;

public class Peer {
    static byte[] unhex(String field) {
        return field.equals("-") ? new byte[0] : HexFormat.of().parseHex(field);
    }

    static void write(String addr, String specPath) throws IOException {
        int colon = addr.lastIndexOf(':');
        List<String> spec = Files.readAllLines(Paths.get(specPath));
        int done = 0;
        try (Socket socket = new Socket(addr.substring(0, colon), Integer.parseInt(addr.substring(colon + 1)))) {
            OutputStream out = new BufferedOutputStream(socket.getOutputStream(), 1 << 16);
            for (String line : spec) {
                String[] f = line.split(" ");
                if (f[0].equals("msg")) {
                    Any.newBuilder()
                            .setTypeUrl(f[1].equals("-") ? "" : f[1])
                            .setValue(ByteString.copyFrom(unhex(f[2])))
                            .build()
                            .writeDelimitedTo(out);
                } else if (f[0].equals("raw")) {
                    out.write(unhex(f[1]));
                } else {
                    throw new IllegalArgumentException("bad spec line " + line);
                }
                done++;
            }
            out.flush();
        } catch (IOException e) {
            System.out.println("error after " + done + ": " + e);
            return;
        }
        System.out.println("wrote " + done);
    }

    static void read() throws IOException {
        try (ServerSocket server = new ServerSocket(0, 1, InetAddress.getByName("127.0.0.1"))) {
            System.out.println("listening " + server.getLocalPort());
            System.out.flush();
            try (Socket socket = server.accept()) {
                InputStream in = new BufferedInputStream(socket.getInputStream(), 1 << 16);
                BufferedWriter out = new BufferedWriter(new OutputStreamWriter(System.out, StandardCharsets.US_ASCII), 1 << 16);
                HexFormat hex = HexFormat.of();
                while (true) {
                    Any message;
                    try {
                        message = Any.parseDelimitedFrom(in);
                    } catch (InvalidProtocolBufferException e) {
                        out.write("error parse: " + e.getMessage().replace('\n', ' ') + "\n");
                        break;
                    }
                    if (message == null) {
                        out.write("end\n");
                        break;
                    }
                    String url = message.getTypeUrl();
                    String value = hex.formatHex(message.getValue().toByteArray());
                    out.write("msg " + (url.isEmpty() ? "-" : url) + " " + (value.isEmpty() ? "-" : value) + "\n");
                }
                out.flush();
            }
        }
    }

    public static void main(String[] args) throws IOException {
        if (args.length == 3 && args[0].equals("write")) {
            write(args[1], args[2]);
        } else if (args.length == 1 && args[0].equals("read")) {
            read();
        } else {
            System.err.println("usage: Peer write HOST:PORT SPEC | Peer read");
            System.exit(2);
        }
    }
}
