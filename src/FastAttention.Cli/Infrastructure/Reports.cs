using System.Globalization;
using System.Text.Json;
using System.Text.Json.Serialization;
using System.Text.Json.Serialization.Metadata;

namespace FastAttention.Cli.Infrastructure;

// The JSON reports of the CLI, one typed record each, serialized by the source-generated ReportJson context.
// Field names are the records' property names in camelCase, in declaration order; they are part of the tool's
// contract (scripts read them), so Tests/Cli/ReportJsonTests pins every record's names and order.

/// <summary><c>fastattn run --report</c>.</summary>
internal sealed record RunReport(
    string Algorithm, int N, int M, int D, int Dv, int Heads, double Scale, bool Causal, double EntryBound, double? Epsilon,
    double ErrorBound, double Seconds, int Threads, string Precision,
    [property: JsonConverter(typeof(NamedValuesConverter))] IReadOnlyList<KeyValuePair<string, object?>> Parameters,
    [property: JsonConverter(typeof(NamedValuesConverter))] IReadOnlyList<KeyValuePair<string, object?>> Budget,
    double PredictedSeconds, double PlanningSeconds, IReadOnlyList<string> Notes, IReadOnlyList<HeadCertificateReport> PerHead,
    SemanticsReport? Semantics = null);

/// <summary>What a run's problem fed attention beyond Q, K, V: grouped-query heads and the mask (shapes, not data).</summary>
internal sealed record SemanticsReport(int Batch, int KvHeads, string CausalAlign, int[]? KeyLengths, string? BooleanMask, string? Bias, int? Window)
{
    public static SemanticsReport Of<T>(AttentionProblem<T> p) where T : unmanaged, System.Numerics.IBinaryFloatingPointIeee754<T> =>
        new(p.Batch, p.KvHeads, p.Mask.CausalAlignment == CausalAlignment.BottomRight ? "bottom-right" : "top-left",
            p.Mask.HasKeyLengths ? p.Mask.KeyLengths.ToArray() : null, p.Mask.BooleanMask?.ShapeText, p.Mask.Bias?.ShapeText, p.Mask.Window);
}

/// <summary><c>fastattn bench semantics --json</c>: GQA against MHA, masks against none, the exact certificate against its error.</summary>
internal sealed record BenchSemanticsReport(
    int N, int M, int D, int Threads, string Precision,
    int GqaN, int QueryHeads, int KvHeads, double MhaSecondsPerQueryHead, double GqaSecondsPerQueryHead, double GqaOverMha,
    long MhaBytesAllocatedPerRun, long GqaBytesAllocatedPerRun, long MhaKvInputBytes, long GqaExtraBytesVsMha,
    double UnmaskedSeconds, double PaddedHalfSeconds, double PaddedOverUnmasked, int Window, double WindowSeconds, double WindowOverUnmasked,
    int BoundN, IReadOnlyList<BoundMeasurement> Bounds);

/// <summary>One certificate check: the exact kernel's bound and the error measured on every row against the float64 reference.</summary>
internal sealed record BoundMeasurement(string Inputs, string Precision, int D, double Bound, double Measured, double BoundOverMeasured);

/// <summary>One head of a certificate.</summary>
internal sealed record HeadCertificateReport(
    int Head, string Algorithm, double ErrorBound, double PredictedSeconds,
    [property: JsonConverter(typeof(NamedValuesConverter))] IReadOnlyList<KeyValuePair<string, object?>> Budget,
    [property: JsonConverter(typeof(NamedValuesConverter))] IReadOnlyList<KeyValuePair<string, object?>> Parameters,
    IReadOnlyList<CandidateReport> Candidates);

/// <summary>An alternative the planner weighed: whether it certifies ε, and if not the refusal's code and detail.</summary>
internal sealed record CandidateReport(string Algorithm, bool Certifiable, string? ReasonCode, string? Reason, double PredictedSeconds, double ErrorBound);

/// <summary><c>fastattn plan --json</c>.</summary>
internal sealed record PlanReport(double? Epsilon, double PlanningSeconds, string Rates, IReadOnlyList<PlanHeadReport> Heads);

/// <summary>One head of <c>fastattn plan --json</c>: its statistics, the candidates and the choice.</summary>
internal sealed record PlanHeadReport(
    int Head, PlanStatisticsReport Stats, IReadOnlyList<CandidateReport> Candidates, string Choice, double PredictedSeconds, double ErrorBound,
    [property: JsonConverter(typeof(NamedValuesConverter))] IReadOnlyList<KeyValuePair<string, object?>> Parameters);

/// <summary>The statistics the planner measured on a head.</summary>
internal sealed record PlanStatisticsReport(int N, int M, int D, double EntryBound, double QMax, double KMax, double VMax, double LogitBound, int? RankQ, int? RankK);

/// <summary><c>fastattn bench planner --json</c>.</summary>
internal sealed record BenchPlannerReport(string Rates, IReadOnlyList<PlannerInstanceReport> Instances);

/// <summary>One instance of <c>fastattn bench planner</c>: the fastest algorithm by name against <c>auto</c>.</summary>
internal sealed record PlannerInstanceReport(
    string Instance, int N, int D, double Epsilon, string Fastest, double FastestSeconds, string AutoChoice, double AutoSeconds,
    double AutoOverFastest, double PlanningSeconds, double ExecuteSeconds, double PlanningOverChosen, double PredictedSeconds,
    double PredictedOverActual, double AutoError, double AutoBound, string ByName, IReadOnlyList<CandidateReport> Candidates);

/// <summary>The machine rates cached by <c>fastattn calibrate</c> (see <see cref="RatesCache"/>).</summary>
internal sealed record RatesFile(string Machine, string Source, double FlopsPerSecond, double ExpsPerSecond, double ScalarFlopsPerSecond,
    double BytesPerSecond, double SecondsPerTreeNode, double SecondsPerLeafKey);

/// <summary><c>fastattn gradient --report</c>.</summary>
internal sealed record GradientReport(
    string Oracle, bool OracleIsExact, int N, int M, int D, double Scale, double EntryBound, double? Epsilon, int OracleCalls,
    int OracleCallLimit, PerCallEpsilon PerCallEpsilon, double PaperEpsilon2, double AprioriBound, double GuaranteedBound,
    double Seconds, double OracleSeconds);

/// <summary>The per-call ε of the gradient reduction's three kinds of oracle call.</summary>
internal sealed record PerCallEpsilon(double C5, double W, double C7);

/// <summary><c>fastattn bench exact --json</c>.</summary>
internal sealed record BenchExactReport(
    int N, int M, int D, int Threads, string Precision, bool Causal, double Bound, int Repeats, double Seconds, double SecondsMin, double SecondsMax,
    double Gflops, double PeakGflops, double FractionOfPeak, double ExpLimitGexps, double KernelGexps, double FractionOfExpLimit,
    double BandwidthGBs, double KernelGBs, double FractionOfBandwidth,
    double? OnnxRuntimeSeconds, double? OnnxRuntimeSecondsMin, double? OnnxRuntimeSecondsMax, double? SpeedupVsOnnxRuntime,
    double? MaxAbsErrorVsOnnxRuntime, long ExtraBytesAllocated,
    [property: JsonConverter(typeof(NamedValuesConverter))] IReadOnlyList<KeyValuePair<string, object?>> Kernel);

/// <summary><c>fastattn bench polynomial --json</c>.</summary>
internal sealed record BenchPolynomialReport(
    string Algorithm, int N, int M, int D, double Bound, double Scale, bool Causal, string Precision, int Threads,
    double Seconds, double ExactSeconds, double SpeedupVsExact, double MaxAbsError, double Epsilon, double ErrorBound,
    int Degree, int Rank, double RankPaperBound, [property: JsonPropertyName("R")] double R,
    int ExactSampledRows, double HalfSeconds, double DoublingRatio);

/// <summary><c>fastattn bench range --json</c> (also one row of <c>experiment scaling</c>).</summary>
internal sealed record BenchRangeReport(
    string Algorithm, int N, int D, double Bound, double Scale, double ValueBound, string Distribution, bool Causal, int Threads,
    double Epsilon, double ErrorBound, double MaxAbsError, double Seconds, int Repeats, double ExactSeconds,
    double SpeedupVsExact, int ExactSampledRows, long PeakWorkingSetBytes,
    [property: JsonConverter(typeof(NamedValuesConverter))] IReadOnlyList<KeyValuePair<string, object?>> Parameters)
{
    /// <summary>Fastest and slowest of the <see cref="Repeats"/> runs (<see cref="Seconds"/> is their median).</summary>
    public double MinSeconds { get; init; } = Seconds;
    public double MaxSeconds { get; init; } = Seconds;
    /// <summary>The untimed first run at full size (cold: its plan's code paths may not be compiled yet).</summary>
    public double FirstRunSeconds { get; init; } = Seconds;
}

/// <summary><c>fastattn bench backward --json</c>.</summary>
internal sealed record BenchBackwardReport(
    int N, int M, int D, bool Causal, string Precision, int Threads, int Repeats,
    double ForwardSeconds, double BackwardSeconds, double Ratio, double SavingForwardSeconds,
    double ForwardCpuSeconds, double BackwardCpuSeconds, double SavingForwardCpuSeconds,
    double CpuRatio, double CpuRatioVsSavingForward, double RatioVsSavingForward,
    double BackwardGflops, double ForwardGflops, double SavingForwardGflops, double PeakGflops, double BackwardFractionOfPeak,
    double SavingForwardMaxAbsError, double DqSampledMaxAbsError, double DqSampledMaxAbs);

/// <summary><c>fastattn bench gradient --json</c>.</summary>
internal sealed record BenchGradientReport(
    int N, int D, double Bound, double Scale, string Oracle, int Threads,
    double Seconds, double OracleSeconds, double ExactSeconds, double ExactOracleReductionSeconds, double? DirectReferenceSeconds,
    string ErrorMeasuredAgainst, double SpeedupVsExact, double MaxAbsError, double MaxAbsGradient, double Epsilon,
    double GuaranteedBound, int OracleCalls, int OracleCallLimit,
    double PerCallEpsilonC5, double PerCallEpsilonW, double PerCallEpsilonC7, double PaperEpsilon2);

/// <summary>The attention instance a reduction built (all null when it answered without the oracle).</summary>
internal sealed record ReductionInstanceReport(int? N, int? D, double? Bound, double? Epsilon, int? Keys)
{
    public static ReductionInstanceReport Of(FastAttention.Reductions.ReductionInstance? i) => new(i?.N, i?.D, i?.Bound, i?.Epsilon, i?.Keys);
}

/// <summary>What every <c>fastattn reduce … --json</c> report has besides its answer and its own fields.</summary>
internal sealed record ReduceHeader(string Oracle, int OracleCalls, ReductionInstanceReport Instance, string Check);

/// <summary><c>fastattn reduce rowsums --json</c>.</summary>
internal sealed record RowSumsReport(
    string Problem, double[] Answer, int[]? Witness, string Oracle, int OracleCalls, ReductionInstanceReport Instance, string Check,
    double[] LogEstimates, int Rounds);

/// <summary><c>fastattn reduce maxip --json</c>.</summary>
internal sealed record MaxIpReport(
    string Problem, long[] Answer, int[]? Witness, string Oracle, int OracleCalls, ReductionInstanceReport Instance, string Check,
    double Lambda);

/// <summary><c>fastattn reduce ov --json</c>.</summary>
internal sealed record OrthogonalVectorsReport(
    string Problem, bool Answer, int[]? Witness, string Oracle, int OracleCalls, ReductionInstanceReport Instance, string Check,
    string Method, int Samples, double FailureProbability);

/// <summary><c>fastattn reduce ann --json</c>.</summary>
internal sealed record NearestNeighbourReport(
    string Problem, int[] Answer, int[] Witness, string Oracle, int OracleCalls, ReductionInstanceReport Instance, string Check,
    int Distance, int LowerBound, int GapCalls, int BruteForceCalls);

/// <summary><c>fastattn reduce sat --json</c>.</summary>
internal sealed record SatReport(
    string Problem, bool Answer, int[]? Witness, string Oracle, int OracleCalls, ReductionInstanceReport Instance, string Check,
    int Variables, int Clauses, int VectorsA, int VectorsB, string Via, double FailureProbability);

/// <summary>
/// The serializer context of all reports: indented, camelCase, non-finite numbers as the strings "NaN", "Infinity",
/// "-Infinity" (a report of a refused or degenerate run stays valid JSON), nulls written.
/// </summary>
[JsonSourceGenerationOptions(PropertyNamingPolicy = JsonKnownNamingPolicy.CamelCase, WriteIndented = true,
    NumberHandling = JsonNumberHandling.AllowNamedFloatingPointLiterals)]
[JsonSerializable(typeof(RunReport))]
[JsonSerializable(typeof(GradientReport))]
[JsonSerializable(typeof(BenchExactReport))]
[JsonSerializable(typeof(BenchPolynomialReport))]
[JsonSerializable(typeof(BenchRangeReport))]
[JsonSerializable(typeof(BenchBackwardReport))]
[JsonSerializable(typeof(BenchGradientReport))]
[JsonSerializable(typeof(RowSumsReport))]
[JsonSerializable(typeof(MaxIpReport))]
[JsonSerializable(typeof(OrthogonalVectorsReport))]
[JsonSerializable(typeof(NearestNeighbourReport))]
[JsonSerializable(typeof(SatReport))]
[JsonSerializable(typeof(PlanReport))]
[JsonSerializable(typeof(BenchPlannerReport))]
[JsonSerializable(typeof(RatesFile))]
[JsonSerializable(typeof(BenchSemanticsReport))]
internal sealed partial class ReportJson : JsonSerializerContext;

/// <summary>Writes a report as JSON, or as aligned "name value" lines for people.</summary>
internal static class Reports
{
    public static string Json<T>(T report, JsonTypeInfo<T> type) => JsonSerializer.Serialize(report, type);

    /// <summary>
    /// One line per top-level field: the name padded to <paramref name="width"/>, then the value (numbers with
    /// <paramref name="number"/>, default round-trip; nested objects as name=value pairs; nulls empty).
    /// </summary>
    public static void WriteText<T>(TextWriter o, T report, JsonTypeInfo<T> type, int width, Func<double, string>? number = null)
    {
        number ??= x => x.ToString(CultureInfo.InvariantCulture);
        var root = JsonSerializer.SerializeToElement(report, type);
        foreach (var p in root.EnumerateObject())
            o.WriteLine(p.Name.PadRight(width) + " " + Text(p.Value, number));
    }

    private static string Text(JsonElement v, Func<double, string> number) => v.ValueKind switch
    {
        JsonValueKind.Null => "",
        JsonValueKind.True => "True",
        JsonValueKind.False => "False",
        JsonValueKind.String => v.GetString()!,
        JsonValueKind.Number when v.TryGetInt64(out long l) && !v.GetRawText().AsSpan().ContainsAny(".eE") => l.ToString(CultureInfo.InvariantCulture),
        JsonValueKind.Number => number(v.GetDouble()),
        JsonValueKind.Object => string.Join(" ", v.EnumerateObject().Select(p => $"{p.Name}={Text(p.Value, number)}")),
        _ => string.Join(" ", v.EnumerateArray().Select(x => Text(x, number))),
    };
}

/// <summary>
/// Named scalars (an algorithm's parameters, see <see cref="CertificateReport.Parameters"/>; error terms) as a JSON
/// object in their order. Each algorithm has its own parameter record, so the values are written by their runtime type.
/// </summary>
internal sealed class NamedValuesConverter : JsonConverter<IReadOnlyList<KeyValuePair<string, object?>>>
{
    public override IReadOnlyList<KeyValuePair<string, object?>> Read(ref Utf8JsonReader reader, Type typeToConvert, JsonSerializerOptions options) =>
        throw new NotSupportedException("reports are written, not read");

    public override void Write(Utf8JsonWriter writer, IReadOnlyList<KeyValuePair<string, object?>> value, JsonSerializerOptions options)
    {
        writer.WriteStartObject();
        foreach (var kv in value)
        {
            writer.WritePropertyName(kv.Key);
            WriteScalar(writer, kv.Value);
        }
        writer.WriteEndObject();
    }

    /// <summary>A number, string or bool; non-finite numbers as strings, anything else by its invariant ToString.</summary>
    private static void WriteScalar(Utf8JsonWriter w, object? v)
    {
        switch (v)
        {
            case null: w.WriteNullValue(); break;
            case string s: w.WriteStringValue(s); break;
            case bool b: w.WriteBooleanValue(b); break;
            case int i: w.WriteNumberValue(i); break;
            case long l: w.WriteNumberValue(l); break;
            case float f: WriteScalar(w, (double)f); break;
            case double d when double.IsFinite(d): w.WriteNumberValue(d); break;
            case double d: w.WriteStringValue(d.ToString(CultureInfo.InvariantCulture)); break;
            default: w.WriteStringValue(Convert.ToString(v, CultureInfo.InvariantCulture)); break;
        }
    }
}
