using System.Text.Json;
using FastAttention.Cli.Infrastructure;

namespace FastAttention.Tests.Cli;

/// <summary>
/// The report JSON's field names are the tool's contract with scripts: these are the names, in order, that the
/// hand-written writer produced before the reports became typed records under a source-generated context.
/// </summary>
public class ReportJsonTests
{
    private const string ReduceCommon = "problem answer witness oracle oracleCalls instance check ";

    public static TheoryData<Type, string> Reports => new()
    {
        { typeof(RunReport), "algorithm n m d dv heads scale causal entryBound epsilon errorBound seconds threads precision parameters budget predictedSeconds planningSeconds notes perHead semantics" },
        { typeof(SemanticsReport), "batch kvHeads causalAlign keyLengths booleanMask bias window" },
        { typeof(BenchSemanticsReport), "n m d threads precision gqaN queryHeads kvHeads mhaSecondsPerQueryHead gqaSecondsPerQueryHead gqaOverMha mhaBytesAllocatedPerRun gqaBytesAllocatedPerRun mhaKvInputBytes gqaExtraBytesVsMha unmaskedSeconds paddedHalfSeconds paddedOverUnmasked window windowSeconds windowOverUnmasked boundN bounds" },
        { typeof(BoundMeasurement), "inputs precision d bound measured boundOverMeasured" },
        { typeof(HeadCertificateReport), "head algorithm errorBound predictedSeconds budget parameters candidates" },
        { typeof(CandidateReport), "algorithm certifiable reasonCode reason predictedSeconds errorBound" },
        { typeof(PlanReport), "epsilon planningSeconds rates heads" },
        { typeof(PlanHeadReport), "head stats candidates choice predictedSeconds errorBound parameters" },
        { typeof(PlanStatisticsReport), "n m d entryBound qMax kMax vMax logitBound rankQ rankK" },
        { typeof(BenchPlannerReport), "rates instances" },
        { typeof(PlannerInstanceReport), "instance n d epsilon fastest fastestSeconds autoChoice autoSeconds autoOverFastest planningSeconds executeSeconds planningOverChosen predictedSeconds predictedOverActual autoError autoBound byName candidates" },
        { typeof(RatesFile), "machine source flopsPerSecond expsPerSecond scalarFlopsPerSecond bytesPerSecond secondsPerTreeNode secondsPerLeafKey" },
        { typeof(GradientReport), "oracle oracleIsExact n m d scale entryBound epsilon oracleCalls oracleCallLimit perCallEpsilon paperEpsilon2 aprioriBound guaranteedBound seconds oracleSeconds" },
        { typeof(PerCallEpsilon), "c5 w c7" },
        // issue 9: bench exact keeps its fields and adds the exp limit, the bandwidth, repeats with min/max and the kernel plan;
        // issue 11: and the entry bound of Q and K (large logits).
        { typeof(BenchExactReport), "n m d threads precision causal bound repeats seconds secondsMin secondsMax gflops peakGflops fractionOfPeak expLimitGexps kernelGexps fractionOfExpLimit bandwidthGBs kernelGBs fractionOfBandwidth onnxRuntimeSeconds onnxRuntimeSecondsMin onnxRuntimeSecondsMax speedupVsOnnxRuntime maxAbsErrorVsOnnxRuntime extraBytesAllocated kernel" },
        { typeof(BenchPolynomialReport), "algorithm n m d bound scale causal precision threads seconds exactSeconds speedupVsExact maxAbsError epsilon errorBound degree rank rankPaperBound R exactSampledRows halfSeconds doublingRatio" },
        { typeof(BenchRangeReport), "algorithm n d bound scale valueBound distribution causal threads epsilon errorBound maxAbsError seconds repeats exactSeconds speedupVsExact exactSampledRows peakWorkingSetBytes parameters minSeconds maxSeconds firstRunSeconds" },
        { typeof(BenchBackwardReport), "n m d causal precision threads repeats forwardSeconds backwardSeconds ratio savingForwardSeconds forwardCpuSeconds backwardCpuSeconds savingForwardCpuSeconds cpuRatio cpuRatioVsSavingForward ratioVsSavingForward backwardGflops forwardGflops savingForwardGflops peakGflops backwardFractionOfPeak savingForwardMaxAbsError dqSampledMaxAbsError dqSampledMaxAbs" },
        { typeof(BenchGradientReport), "n d bound scale oracle threads seconds oracleSeconds exactSeconds exactOracleReductionSeconds directReferenceSeconds errorMeasuredAgainst speedupVsExact maxAbsError maxAbsGradient epsilon guaranteedBound oracleCalls oracleCallLimit perCallEpsilonC5 perCallEpsilonW perCallEpsilonC7 paperEpsilon2" },
        { typeof(ReductionInstanceReport), "n d bound epsilon keys" },
        { typeof(RowSumsReport), ReduceCommon + "logEstimates rounds" },
        { typeof(MaxIpReport), ReduceCommon + "lambda" },
        { typeof(OrthogonalVectorsReport), ReduceCommon + "method samples failureProbability" },
        { typeof(NearestNeighbourReport), ReduceCommon + "distance lowerBound gapCalls bruteForceCalls" },
        { typeof(SatReport), ReduceCommon + "variables clauses vectorsA vectorsB via failureProbability" },
    };

    [Theory]
    [MemberData(nameof(Reports))]
    public void Field_names_and_order_are_unchanged(Type report, string names)
    {
        var info = ReportJson.Default.GetTypeInfo(report);
        Assert.NotNull(info);
        Assert.Equal(names.Split(' '), info.Properties.Select(p => p.Name));
    }

    [Fact]
    public void A_run_report_keeps_certificate_parameters_nulls_and_non_finite_numbers()
    {
        var parameters = new KeyValuePair<string, object?>[] { new("degree", 7), new("R", 2.5), new("projected", "Q"), new("treeBytes", 1L << 40), new("ratio", double.PositiveInfinity) };
        string json = FastAttention.Cli.Infrastructure.Reports.Json(
            new RunReport("polynomial", 3, 4, 2, 1, 1, 0.5, false, 1.25, 1e-4, double.NaN, 0.01, 2, "f64", parameters,
                [new("approximation", 5e-5), new("float64 rounding", 1e-9)], 0.02, 0.001, ["a note"], []), ReportJson.Default.RunReport);
        using var doc = JsonDocument.Parse(json);
        var root = doc.RootElement;
        Assert.Equal("polynomial", root.GetProperty("algorithm").GetString());
        Assert.Equal(1e-4, root.GetProperty("epsilon").GetDouble());
        Assert.Equal("NaN", root.GetProperty("errorBound").GetString());
        var p = root.GetProperty("parameters");
        Assert.Equal(new[] { "degree", "R", "projected", "treeBytes", "ratio" }, p.EnumerateObject().Select(x => x.Name));
        Assert.Equal(7, p.GetProperty("degree").GetInt32());
        Assert.Equal(2.5, p.GetProperty("R").GetDouble());
        Assert.Equal("Q", p.GetProperty("projected").GetString());
        Assert.Equal(1L << 40, p.GetProperty("treeBytes").GetInt64());
        Assert.Equal("Infinity", p.GetProperty("ratio").GetString());
        Assert.Equal(new[] { "approximation", "float64 rounding" }, root.GetProperty("budget").EnumerateObject().Select(x => x.Name));
        Assert.Equal("a note", root.GetProperty("notes")[0].GetString());
        Assert.Equal(0, root.GetProperty("perHead").GetArrayLength());
        Assert.Contains("\n", json); // indented, as before

        string exact = FastAttention.Cli.Infrastructure.Reports.Json(
            new BenchExactReport(8, 8, 4, 1, "f64", false, 1, 3, 1e-5, 1e-5, 2e-5, 1, 2, 0.5, 3, 1, 0.33, 10, 1, 0.1, null, null, null, null, null, 0,
                [new("path", "Prefill"), new("vectorBits", 256)]), ReportJson.Default.BenchExactReport);
        using var e = JsonDocument.Parse(exact);
        Assert.Equal(JsonValueKind.Null, e.RootElement.GetProperty("onnxRuntimeSeconds").ValueKind);
        Assert.Equal("Prefill", e.RootElement.GetProperty("kernel").GetProperty("path").GetString());
    }

    [Fact]
    public void Text_output_is_one_aligned_line_per_field()
    {
        var report = new BenchGradientReport(48, 3, 1, 0.5, "exact", 2, 0.25, 0.125, 0.5, 0.5, null, "direct float64 reference",
            2, 1e-12, 3.5, 1e-3, 0, 5, 10, 1e-4, 2e-4, 3e-4, 1e-6);
        var o = new StringWriter();
        FastAttention.Cli.Infrastructure.Reports.WriteText(o, report, ReportJson.Default.BenchGradientReport, 20);
        var lines = o.ToString().Split('\n', StringSplitOptions.RemoveEmptyEntries).Select(l => l.TrimEnd('\r')).ToArray();
        Assert.Equal(ReportJson.Default.BenchGradientReport.Properties.Count, lines.Length);
        Assert.Equal("n                    48", lines[0]);
        Assert.Equal("scale                0.5", lines[3]);
        Assert.Equal("directReferenceSeconds ", lines[10]);
        Assert.Equal("errorMeasuredAgainst direct float64 reference", lines[11]);
        Assert.Equal("maxAbsError          1E-12", lines[13]);
    }
}
