using Google.Protobuf;
using Microsoft.ML.OnnxRuntime;

namespace FastAttention.Cli.Infrastructure;

/// <summary>
/// ONNX Runtime's CPU attention as the peer for <c>bench exact</c>: a one-node model
/// (<c>com.microsoft.MultiHeadAttention</c>, one head, hidden size d) built in code. Float32 only (ORT's CPU kernel).
/// </summary>
internal sealed class OnnxAttentionPeer : IDisposable
{
    private readonly InferenceSession _session;
    private readonly int _n, _m, _d, _dv;

    public OnnxAttentionPeer(int n, int m, int d, int dv, double scale, bool causal, int threads)
    {
        _n = n; _m = m; _d = d; _dv = dv;
        var options = new SessionOptions { IntraOpNumThreads = threads, InterOpNumThreads = 1, GraphOptimizationLevel = GraphOptimizationLevel.ORT_ENABLE_ALL };
        _session = new InferenceSession(BuildModel(n, m, d, dv, scale, causal), options);
    }

    /// <summary>Runs attention on row-major Q (n×d), K (m×d), V (m×dv); returns n×dv.</summary>
    public float[] Run(float[] q, float[] k, float[] v)
    {
        using var qv = OrtValue.CreateTensorValueFromMemory(q, [1, _n, _d]);
        using var kv = OrtValue.CreateTensorValueFromMemory(k, [1, _m, _d]);
        using var vv = OrtValue.CreateTensorValueFromMemory(v, [1, _m, _dv]);
        using var runOptions = new RunOptions();
        using var outputs = _session.Run(runOptions, ["query", "key", "value"], [qv, kv, vv], ["output"]);
        return outputs[0].GetTensorDataAsSpan<float>().ToArray();
    }

    public void Dispose() => _session.Dispose();

    /// <summary>Serialises the ModelProto (onnx.proto field numbers) for one MultiHeadAttention node.</summary>
    internal static byte[] BuildModel(int n, int m, int d, int dv, double scale, bool causal)
    {
        var attributes = new List<byte[]>
        {
            Message(w => { w.String(1, "num_heads"); w.Int(20, 2); w.Int(3, 1); }),                 // AttributeProto INT
            Message(w => { w.String(1, "scale"); w.Int(20, 1); w.Float(2, (float)scale); }),          // AttributeProto FLOAT
        };
        if (causal) attributes.Add(Message(w => { w.String(1, "unidirectional"); w.Int(20, 2); w.Int(3, 1); }));
        var node = Message(w =>
        {
            w.String(1, "query"); w.String(1, "key"); w.String(1, "value");
            w.String(2, "output");
            w.String(3, "attention");
            w.String(4, "MultiHeadAttention");
            foreach (var a in attributes) w.Bytes(5, a);
            w.String(7, "com.microsoft");
        });
        var graph = Message(w =>
        {
            w.Bytes(1, node);
            w.String(2, "fastattn_peer");
            w.Bytes(11, ValueInfo("query", 1, n, d));
            w.Bytes(11, ValueInfo("key", 1, m, d));
            w.Bytes(11, ValueInfo("value", 1, m, dv));
            w.Bytes(12, ValueInfo("output", 1, n, dv));
        });
        return Message(w =>
        {
            w.Int(1, 8);                                                            // ir_version
            w.String(2, "fastattn");                                                // producer_name
            w.Bytes(7, graph);
            w.Bytes(8, Message(o => { o.String(1, ""); o.Int(2, 17); }));          // opset_import ai.onnx 17
            w.Bytes(8, Message(o => { o.String(1, "com.microsoft"); o.Int(2, 1); }));
        });
    }

    private static byte[] ValueInfo(string name, params long[] dims) => Message(w =>
    {
        w.String(1, name);
        var shape = Message(s => { foreach (long dim in dims) s.Bytes(1, Message(x => x.Int(1, dim))); });
        var tensor = Message(t => { t.Int(1, 1); t.Bytes(2, shape); });        // elem_type FLOAT = 1
        w.Bytes(2, Message(t => t.Bytes(1, tensor)));
    });

    private static byte[] Message(Action<ProtoWriter> build)
    {
        using var ms = new MemoryStream();
        var cos = new CodedOutputStream(ms);
        build(new ProtoWriter(cos));
        cos.Flush();
        return ms.ToArray();
    }

    private readonly struct ProtoWriter(CodedOutputStream s)
    {
        public void Int(int field, long value) { s.WriteTag(field, WireFormat.WireType.Varint); s.WriteInt64(value); }
        public void Float(int field, float value) { s.WriteTag(field, WireFormat.WireType.Fixed32); s.WriteFloat(value); }
        public void String(int field, string value) { s.WriteTag(field, WireFormat.WireType.LengthDelimited); s.WriteString(value); }
        public void Bytes(int field, byte[] value) { s.WriteTag(field, WireFormat.WireType.LengthDelimited); s.WriteBytes(ByteString.CopyFrom(value)); }
    }
}
