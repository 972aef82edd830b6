using System.Globalization;
using System.Text.Json;

namespace FastAttention.Cli.Infrastructure;

/// <summary>
/// The machine rates measured by <c>fastattn calibrate</c>, cached per machine in the user's cache folder
/// ($XDG_CACHE_HOME/fastattn/rates.json, else ~/.cache/fastattn/rates.json; FASTATTN_RATES overrides the path).
/// Absent or unreadable: the library's built-in defaults.
/// </summary>
internal static class RatesCache
{
    public static string PathFor()
    {
        string? explicitPath = Environment.GetEnvironmentVariable("FASTATTN_RATES");
        if (!string.IsNullOrEmpty(explicitPath)) return explicitPath;
        string? xdg = Environment.GetEnvironmentVariable("XDG_CACHE_HOME");
        string root = !string.IsNullOrEmpty(xdg) ? xdg : Path.Combine(Environment.GetFolderPath(Environment.SpecialFolder.UserProfile), ".cache");
        return Path.Combine(root, "fastattn", "rates.json");
    }

    /// <summary>The cached rates, or null when there are none (or they cannot be read, or belong to another machine).</summary>
    public static MachineRates? Load()
    {
        string path = PathFor();
        try
        {
            if (!File.Exists(path)) return null;
            using var doc = JsonDocument.Parse(File.ReadAllText(path));
            var r = doc.RootElement;
            if (r.TryGetProperty("machine", out var m) && m.GetString() != MachineKey()) return null;
            double G(string name) => r.GetProperty(name).GetDouble();
            var rates = new MachineRates(G("flopsPerSecond"), G("expsPerSecond"), G("scalarFlopsPerSecond"), G("bytesPerSecond"), G("secondsPerTreeNode"), G("secondsPerLeafKey"))
            {
                Source = r.TryGetProperty("source", out var s) ? s.GetString() ?? path : path,
            };
            double[] all = [rates.FlopsPerSecond, rates.ExpsPerSecond, rates.ScalarFlopsPerSecond, rates.BytesPerSecond, rates.SecondsPerTreeNode, rates.SecondsPerLeafKey];
            return all.All(x => x > 0 && double.IsFinite(x)) ? rates : null;
        }
        catch (Exception e) when (e is IOException or JsonException or KeyNotFoundException or InvalidOperationException or UnauthorizedAccessException or FormatException)
        {
            return null;
        }
    }

    /// <summary>The cached rates or the built-in defaults.</summary>
    public static MachineRates LoadOrDefault() => Load() ?? MachineRates.Default;

    public static void Save(MachineRates rates)
    {
        string path = PathFor();
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        using var outputs = new OutputFiles();
        string full = outputs.Output("the rates cache", path);
        outputs.WriteText(full, Reports.Json(new RatesFile(MachineKey(), rates.Source, rates.FlopsPerSecond, rates.ExpsPerSecond,
            rates.ScalarFlopsPerSecond, rates.BytesPerSecond, rates.SecondsPerTreeNode, rates.SecondsPerLeafKey), ReportJson.Default.RatesFile));
        outputs.Commit();
    }

    /// <summary>Rates belong to one machine: host name, processor count and SIMD width.</summary>
    private static string MachineKey() => string.Create(CultureInfo.InvariantCulture,
        $"{Environment.MachineName}/{Environment.ProcessorCount}/{FastAttention.Exact.SimdInfo.Float32Lanes}");
}
