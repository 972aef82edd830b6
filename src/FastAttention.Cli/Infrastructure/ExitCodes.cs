using FastAttention.IO;

namespace FastAttention.Cli.Infrastructure;

/// <summary>A usage or input problem detected by the tool itself; reported on one line, exit code 2.</summary>
public sealed class UsageException(string message) : Exception(message);

internal static class ExitCodes
{
    public const int Success = 0;
    public const int Internal = 1;
    public const int Usage = 2;

    public static bool IsUserError(Exception e) =>
        e is UsageException or ArgumentException or NpyFormatException or AttentionRefusedException or FileNotFoundException or DirectoryNotFoundException;

    public static string Describe(Exception e) => e switch
    {
        ArgumentException a when a.ParamName is not null => $"{a.ParamName}: {StripParam(a.Message)}",
        _ => e.Message,
    };

    private static string StripParam(string message)
    {
        int i = message.LastIndexOf(" (Parameter '", StringComparison.Ordinal);
        return i >= 0 ? message[..i] : message;
    }
}
