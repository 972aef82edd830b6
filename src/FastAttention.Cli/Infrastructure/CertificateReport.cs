namespace FastAttention.Cli.Infrastructure;

/// <summary>The certificate as report fields (shared by <c>run --report</c>, <c>plan --json</c> and the demo).</summary>
internal static class CertificateReport
{
    public static List<KeyValuePair<string, object?>> Terms(IReadOnlyList<ErrorTerm> terms) =>
        [.. terms.Select(t => new KeyValuePair<string, object?>(t.Name, t.Value))];

    public static List<KeyValuePair<string, object?>> Parameters(AlgorithmParameters? p) =>
        p is null ? [] : [.. p.Describe().Where(kv => kv.Value is not null)];

    public static List<KeyValuePair<string, object?>> Candidate(PlanCandidate c) =>
    [
        new("algorithm", c.Algorithm), new("certifiable", c.Certifiable),
        new("reasonCode", c.Refusal?.Reason.ToString()), new("reason", c.Refusal?.Detail),
        new("predictedSeconds", c.PredictedSeconds), new("errorBound", c.ErrorBound),
    ];

    public static List<object?> Heads(ErrorCertificate c) =>
    [
        .. c.Heads.Select(h => (object?)new List<KeyValuePair<string, object?>>
        {
            new("head", h.Head), new("algorithm", h.Algorithm), new("errorBound", h.ErrorBound),
            new("predictedSeconds", h.PredictedSeconds), new("budget", Terms(h.Budget)),
            new("parameters", Parameters(h.Parameters)), new("candidates", h.Candidates.Select(Candidate).ToList()),
        }),
    ];
}
