using System.Diagnostics;
using System.IO.Compression;
using System.Runtime.InteropServices;
using System.Xml.Linq;
using FastAttention.Exact;
using FastAttention.IO;
using FastAttention.Tests.Cli;
using FastAttention.Tests.TestSupport;

namespace FastAttention.Tests.Packaging;

/// <summary>
/// What a new user does: <c>dotnet pack</c> both projects, install the tool from the folder, call it. The packs
/// reuse the build the tests run on (<c>--no-build</c>, same configuration), into a temporary folder, with a
/// unique prerelease version so that no cached copy of an earlier package can stand in for this one. The tool is
/// packed with the natives of this machine's RID only (FastAttentionNativeRuntimes), which makes the pack and the
/// install three times cheaper (20 MB instead of 82 MB); the default RID set is checked on the build's deps file.
/// </summary>
public class PackagingTests
{
#if DEBUG
    private const string Configuration = "Debug";
#else
    private const string Configuration = "Release";
#endif

    [Fact]
    public void Packs_install_as_a_tool_and_run_with_their_native_libraries()
    {
        string root = RepositoryRoot();
        string work = CliRunner.TempDir();
        try { PackInstallAndRun(root, work); }
        finally { Directory.Delete(work, recursive: true); } // the packages and the installed tool are ≈ 100 MB
    }

    private static void PackInstallAndRun(string root, string work)
    {
        string rid = RuntimeInformation.RuntimeIdentifier;
        string feed = Path.Combine(work, "nupkg"), tools = Path.Combine(work, "tools");
        string version = "0.0.0-test" + Guid.NewGuid().ToString("N")[..12];

        Dotnet(root, "pack", "src/FastAttention/FastAttention.csproj", "-c", Configuration, "--no-build", "-o", feed, $"-p:PackageVersion={version}");
        Dotnet(root, "pack", "src/FastAttention.Cli/FastAttention.Cli.csproj", "-c", Configuration, "--no-build", "-o", feed, $"-p:PackageVersion={version}",
            $"-p:FastAttentionNativeRuntimes={rid}{(OperatingSystem.IsMacOS() ? ";osx" : "")}");

        CheckLibraryPackage(Path.Combine(feed, $"FastAttention.{version}.nupkg"), version);
        Assert.True(File.Exists(Path.Combine(feed, $"FastAttention.{version}.snupkg")), "the library's symbols package (.snupkg) is missing");
        using (var symbols = ZipFile.OpenRead(Path.Combine(feed, $"FastAttention.{version}.snupkg")))
            Assert.Contains(symbols.Entries, e => e.FullName == "lib/net10.0/FastAttention.pdb");
        CheckToolPackage(Path.Combine(feed, $"fastattn.{version}.nupkg"), version, rid);

        // --source (not --add-source): only the fresh folder, so nothing from a remote feed can be installed instead.
        Dotnet(work, "tool", "install", "fastattn", "--tool-path", tools, "--source", feed, "--version", version);
        string fastattn = Path.Combine(tools, OperatingSystem.IsWindows() ? "fastattn.exe" : "fastattn");
        Assert.True(File.Exists(fastattn), $"the tool shim {fastattn} was not created");

        var info = Run(work, fastattn, "info");
        Assert.True(info.Code == 0, info.Stderr);
        Assert.Contains("algorithms     exact, reference", info.Stdout);

        // A small run through the installed tool, checked against the float64 reference.
        var p = TestData.Problem(19, 13, 4, 3, 2, seed: 5);
        string q = Path.Combine(work, "q.npy"), k = Path.Combine(work, "k.npy"), v = Path.Combine(work, "v.npy"), o = Path.Combine(work, "o.npy");
        NpyFile.Write(q, p.Q.Span, [19, 4]); NpyFile.Write(k, p.K.Span, [13, 4]); NpyFile.Write(v, p.V.Span, [13, 3]);
        var run = Run(work, fastattn, "run", "--q", q, "--k", k, "--v", v, "--out", o);
        Assert.True(run.Code == 0, run.Stderr);
        var output = NpyFile.Read(o);
        Assert.Equal(new[] { 19, 3 }, output.Shape);
        Assert.True(TestData.MaxAbsDiff(output.ToFloat64(), ReferenceAttention.Compute(p)) <= 1e-12);

        // ONNX Runtime's native library loads from the installed tool (bench exact runs it as the peer) ...
        var bench = Run(work, fastattn, "bench", "exact", "--n", "64", "--d", "8", "--threads", "1", "--json");
        Assert.True(bench.Code == 0, bench.Stderr);
        using (var json = System.Text.Json.JsonDocument.Parse(bench.Stdout))
            Assert.True(json.RootElement.GetProperty("onnxRuntimeSeconds").GetDouble() > 0, bench.Stdout);

        // ... and so does SkiaSharp's (the experiment draws its PNG with ScottPlot).
        string plots = Path.Combine(work, "plots");
        var plot = Run(work, fastattn, "experiment", "transition", "--out", plots, "--min-log-n", "6", "--max-log-n", "6", "--steps", "1", "--threads", "1");
        Assert.True(plot.Code == 0, plot.Stderr);
        byte[] png = File.ReadAllBytes(Path.Combine(plots, "transition.png"));
        Assert.Equal(new byte[] { 0x89, (byte)'P', (byte)'N', (byte)'G' }, png[..4]);
    }

    private static void CheckLibraryPackage(string path, string version)
    {
        using var zip = ZipFile.OpenRead(path);
        var md = Metadata(zip, "FastAttention.nuspec");
        XNamespace ns = md.Name.Namespace;
        Assert.Equal("FastAttention", md.Element(ns + "id")?.Value);
        Assert.Equal(version, md.Element(ns + "version")?.Value);
        string description = md.Element(ns + "description")?.Value ?? "";
        Assert.NotEqual("Package Description", description);
        Assert.Contains("attention", description, StringComparison.OrdinalIgnoreCase);
        CheckCommonMetadata(zip, md);
        Assert.Contains("attention", (md.Element(ns + "tags")?.Value ?? "").Split(' '));

        // Depends on System.Numerics.Tensors and MathNet.Numerics only (build-time packages stay private).
        var dependencies = md.Descendants(ns + "dependency").Select(d => d.Attribute("id")!.Value).Order().ToArray();
        Assert.Equal(new[] { "MathNet.Numerics", "System.Numerics.Tensors" }, dependencies);
        Assert.Contains(zip.Entries, e => e.FullName == "lib/net10.0/FastAttention.dll");
        Assert.Contains(zip.Entries, e => e.FullName == "lib/net10.0/FastAttention.xml"); // IntelliSense docs
    }

    private static void CheckToolPackage(string path, string version, string rid)
    {
        using var zip = ZipFile.OpenRead(path);
        var md = Metadata(zip, "fastattn.nuspec");
        XNamespace ns = md.Name.Namespace;
        Assert.Equal("fastattn", md.Element(ns + "id")?.Value);
        Assert.Equal(version, md.Element(ns + "version")?.Value);
        Assert.Equal("DotnetTool", md.Descendants(ns + "packageType").Single().Attribute("name")?.Value);
        CheckCommonMetadata(zip, md);

        var settingsEntry = zip.GetEntry("tools/net10.0/any/DotnetToolSettings.xml");
        Assert.NotNull(settingsEntry);
        using (var s = settingsEntry.Open())
        {
            var command = XDocument.Load(s).Descendants("Command").Single();
            Assert.Equal("fastattn", command.Attribute("Name")?.Value);
            Assert.Equal("fastattn.dll", command.Attribute("EntryPoint")?.Value);
        }
        // The natives survive packaging (ONNX Runtime, SkiaSharp, HarfBuzzSharp), for the RIDs asked for only.
        var names = zip.Entries.Select(e => e.FullName).ToHashSet();
        if (rid == "linux-x64")
            foreach (var lib in new[] { "libonnxruntime.so", "libSkiaSharp.so", "libHarfBuzzSharp.so" })
                Assert.Contains($"tools/net10.0/any/runtimes/linux-x64/native/{lib}", names);
        var rids = names.Where(n => n.StartsWith("tools/net10.0/any/runtimes/")).Select(n => n.Split('/')[4]).ToHashSet();
        Assert.Contains(rid, rids);
        Assert.Subset(new HashSet<string> { rid, "osx" }, rids);
    }

    [Fact]
    public void The_tool_keeps_natives_for_its_platforms_only()
    {
        // The default FastAttentionNativeRuntimes, as the build output (and so publish and pack) sees it.
        string bin = Path.Combine(RepositoryRoot(), "src", "FastAttention.Cli", "bin", Configuration, "net10.0");
        using var deps = System.Text.Json.JsonDocument.Parse(File.ReadAllText(Path.Combine(bin, "fastattn.deps.json")));
        var rids = deps.RootElement.GetProperty("targets").EnumerateObject().First().Value.EnumerateObject()
            .Where(lib => lib.Value.TryGetProperty("runtimeTargets", out _))
            .SelectMany(lib => lib.Value.GetProperty("runtimeTargets").EnumerateObject().Select(f => f.Value.GetProperty("rid").GetString()!))
            .ToHashSet();
        var expected = new[] { "linux-arm64", "linux-x64", "osx", "osx-arm64", "win-arm64", "win-x64" };
        Assert.Equal(expected, rids.Order());
        var natives = deps.RootElement.GetProperty("targets").EnumerateObject().First().Value.EnumerateObject()
            .Where(lib => lib.Value.TryGetProperty("runtimeTargets", out _))
            .SelectMany(lib => lib.Value.GetProperty("runtimeTargets").EnumerateObject().Select(f => f.Name)).ToList();
        foreach (var lib in new[] { "runtimes/linux-x64/native/libonnxruntime.so", "runtimes/linux-x64/native/libSkiaSharp.so", "runtimes/osx-arm64/native/libonnxruntime.dylib", "runtimes/win-x64/native/onnxruntime.dll" })
            Assert.Contains(lib, natives);
        Assert.DoesNotContain(natives, n => n.EndsWith(".pdb"));
        // (Not bin/runtimes itself: an incremental build leaves the folders of an earlier, unpruned build in place.)
    }

    private static void CheckCommonMetadata(ZipArchive zip, XElement md)
    {
        XNamespace ns = md.Name.Namespace;
        var license = md.Element(ns + "license");
        Assert.Equal("expression", license?.Attribute("type")?.Value);
        Assert.Equal("MIT", license?.Value);
        Assert.Equal("README.md", md.Element(ns + "readme")?.Value);
        var readme = zip.GetEntry("README.md");
        Assert.NotNull(readme);
        using (var r = new StreamReader(readme.Open()))
            Assert.StartsWith("# FastAttention", r.ReadToEnd());
        string repository = md.Element(ns + "repository")?.Attribute("url")?.Value ?? "";
        Assert.StartsWith("https://", repository);
        Assert.Equal(repository, md.Element(ns + "projectUrl")?.Value);
        Assert.Equal("git", md.Element(ns + "repository")?.Attribute("type")?.Value);
    }

    private static XElement Metadata(ZipArchive zip, string nuspec)
    {
        var entry = zip.GetEntry(nuspec);
        Assert.NotNull(entry);
        using var s = entry.Open();
        var doc = XDocument.Load(s);
        return doc.Root!.Elements().Single(e => e.Name.LocalName == "metadata");
    }

    private static string RepositoryRoot()
    {
        for (var dir = new DirectoryInfo(AppContext.BaseDirectory); dir is not null; dir = dir.Parent)
            if (File.Exists(Path.Combine(dir.FullName, "FastAttention.sln"))) return dir.FullName;
        Assert.Fail($"no FastAttention.sln above {AppContext.BaseDirectory}");
        return "";
    }

    private static void Dotnet(string workingDirectory, params string[] args)
    {
        // No build servers or reused MSBuild nodes: they would outlive the command holding its output pipes open.
        string[] extra = args[0] == "pack" ? ["--disable-build-servers", "-nodeReuse:false", "-v:q", "-nologo"] : [];
        var r = Run(workingDirectory, "dotnet", [.. args, .. extra]);
        Assert.True(r.Code == 0, $"dotnet {string.Join(' ', args)} exited {r.Code}:\n{r.Stdout}\n{r.Stderr}");
    }

    private static (int Code, string Stdout, string Stderr) Run(string workingDirectory, string file, params string[] args)
    {
        var psi = new ProcessStartInfo(file) { WorkingDirectory = workingDirectory, RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var a in args) psi.ArgumentList.Add(a);
        psi.Environment["DOTNET_CLI_TELEMETRY_OPTOUT"] = "1";
        psi.Environment["DOTNET_NOLOGO"] = "1";
        psi.Environment["MSBUILDDISABLENODEREUSE"] = "1";
        // The tool shim finds the runtime the tests run on.
        if (Environment.GetEnvironmentVariable("DOTNET_ROOT") is null && Environment.ProcessPath is { } host && Path.GetFileNameWithoutExtension(host) == "dotnet")
            psi.Environment["DOTNET_ROOT"] = Path.GetDirectoryName(host);
        using var proc = Process.Start(psi)!;
        var stdout = proc.StandardOutput.ReadToEndAsync();
        var stderr = proc.StandardError.ReadToEndAsync();
        if (!proc.WaitForExit(TimeSpan.FromMinutes(3))) { proc.Kill(true); Assert.Fail($"{file} {string.Join(' ', args)} timed out"); }
        return (proc.ExitCode, stdout.Result, stderr.Result);
    }
}
