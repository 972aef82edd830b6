namespace FastAttention.Exact;

/// <summary>
/// Per-core data cache sizes (L1d, L2) and the last-level cache, read once from Linux sysfs
/// (/sys/devices/system/cpu/cpu0/cache/index*/); elsewhere, or when unreadable, common values (32 KiB, 1 MiB, 32 MiB).
/// The exact kernel sizes its prefill key blocks and query tiles from L2, its small-d key blocks from L1.
/// </summary>
internal static class CpuCaches
{
    private static readonly (long L1, long L2, long Last) Sizes = Read();

    /// <summary>L1 data cache of one core, bytes.</summary>
    public static long L1Data => Sizes.L1;
    /// <summary>L2 of one core, bytes.</summary>
    public static long L2 => Sizes.L2;
    /// <summary>The last-level cache (shared), bytes.</summary>
    public static long LastLevel => Sizes.Last;

    private static (long, long, long) Read()
    {
        long l1 = 32 << 10, l2 = 1 << 20, last = 32 << 20;
        try
        {
            const string root = "/sys/devices/system/cpu/cpu0/cache";
            if (!Directory.Exists(root)) return (l1, l2, last);
            long maxLevel = 0;
            foreach (var dir in Directory.GetDirectories(root, "index*"))
            {
                string type = File.ReadAllText(Path.Combine(dir, "type")).Trim();
                if (type == "Instruction") continue;
                int level = int.Parse(File.ReadAllText(Path.Combine(dir, "level")).Trim(), System.Globalization.CultureInfo.InvariantCulture);
                long size = ParseSize(File.ReadAllText(Path.Combine(dir, "size")).Trim());
                if (size <= 0) continue;
                if (level == 1) l1 = size;
                else if (level == 2) l2 = size;
                if (level >= maxLevel) { maxLevel = level; last = size; }
            }
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or FormatException or OverflowException)
        {
            // keep the defaults
        }
        return (l1, l2, last);
    }

    private static long ParseSize(string s)
    {
        long mul = 1;
        if (s.EndsWith('K')) { mul = 1 << 10; s = s[..^1]; }
        else if (s.EndsWith('M')) { mul = 1 << 20; s = s[..^1]; }
        else if (s.EndsWith('G')) { mul = 1 << 30; s = s[..^1]; }
        return long.Parse(s, System.Globalization.CultureInfo.InvariantCulture) * mul;
    }
}
