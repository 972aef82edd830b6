using System.CommandLine;

namespace FastAttention.Cli.Infrastructure;

/// <summary>Options shared by several commands, with their validation in one place.</summary>
internal static class CommonOptions
{
    public static Option<int> Threads() => new("--threads") { Description = "Threads to use (0 = all processors).", DefaultValueFactory = _ => 0 };

    public static Option<string?> Precision() => new("--precision") { Description = "Element type: f32 or f64." };

    public static bool IsFloat32(string? precision, bool defaultF32) => precision switch
    {
        null => defaultF32,
        "f32" or "float32" => true,
        "f64" or "float64" => false,
        _ => throw new UsageException($"--precision must be f32 or f64 (got '{precision}')."),
    };

    public static void Positive(string option, double value)
    {
        if (!(value > 0) || !double.IsFinite(value)) throw new UsageException($"{option} must be a positive number (got {value}).");
    }

    public static void AtLeast(string option, int value, int min)
    {
        if (value < min) throw new UsageException($"{option} must be at least {min} (got {value}).");
    }
}
