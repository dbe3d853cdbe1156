"""Stage 1: the guide's checks that no protocol can answer (tools, the PSK, 802.1X and RADIUS).

Each quotes the guide's own words for the check (``guide=``, as the catalog row's ``guide`` field holds them):
the test's docstring, and evidence "the guide asks" on every outcome. Each passes on a fresh attestation in the
environment file and is otherwise reported as "manual check not attested". See environments/example.yaml,
attestations.
"""
from pytest_vpro.checks import manual_check

# Guide, Introduction
test_gen_troubleshooting_tools_available = manual_check(
    "GEN-TROUBLESHOOTING-TOOLS-AVAILABLE",
    guide="For best results, the following tools and infrastructure access should be available during deployment: "
          "Microsoft Management Console (MMC) tool with Certificates snap-in, Active Directory Users and "
          "Computers (ADUC) snap-in, Certificate Authority snap-in, DNS snap-in, DHCP snap-in, Active Directory "
          "Service Interface Editor (ADSIEdit) and Enterprise PKI snap-in for reviewing infrastructure "
          "components. Microsoft Trace32 tool for viewing Microsoft SCCM log files (available from the Microsoft "
          "SCCM 2007 Toolkit). Access to Active Directory, the network, DNS and DHCP servers and Enterprise PKI. "
          "Network packet capture tool for capturing Intel AMT hello packets. Microsoft TOKENSZ tool for "
          "calculating Kerberos ticket sizes and evaluating Windows group membership (available from Microsoft "
          "download site) Intel® vPro Activator Utility or ZTCLOCALAGENT tool for initiating Intel® AMT hello "
          "packets.")

# Guide, Troubleshooting by Provisioning Stage
test_gen_corrective_actions_simple_first = manual_check(
    "GEN-CORRECTIVE-ACTIONS-SIMPLE-FIRST",
    guide="Work through the stages below in sequence. Each stage describes functionality being tested, "
          "verification checks to test functionality and suggested corrective actions if any verification checks "
          "fail. Functionality verification is cumulative; be sure to successfully verify each stage before "
          "proceeding to the following stages. Some corrective action checks will take more effort to perform "
          "than others; for expediency, perform the simple ones first.")

# Guide, Stage 1 verification checks; Troubleshooting by Component / SCCM Servers
test_s1_wsman_translator_psk_match = manual_check(
    "S1-WSMAN-TRANSLATOR-PSK-MATCH",
    guide="Intel WS-MAN Translator configured with same PSK as any clients using PSK provisioning ... When using "
          "PSK provisioning, check Intel WSMAN Translator is installed on SCCM servers responsible for "
          "provisioning and all clients are using identical PSK.")

# Prerequisites (seed 004), Dependencies External to Configuration Manager 2007
test_pre_8021x_sp1_genscript = manual_check(
    "PRE-8021X-SP1-GENSCRIPT",
    guide="802.1X environments are not natively supported by Configuration Manager 2007 SP1. If you have "
          "AMT-based computers that use 802.1X in a Configuration Manager 2007 SP1 site, you might be able to "
          "support this network environment by using the Intel Genscript tool: "
          "http://go.microsoft.com/fwlink/?LinkId=108363.")

# Prerequisites (seed 004), Dependencies External to Configuration Manager 2007
test_pre_8021x_radius_infra = manual_check(
    "PRE-8021X-RADIUS-INFRA",
    guide="To manage AMT-based computers out of band on an 802.1X authenticated wired network or a wireless "
          "connection, you must have a supporting infrastructure for these environments. These networks can be "
          "configured by using a Microsoft RADIUS solution, which are Network Policy Server on Windows Server "
          "2008 or Internet Authentication Service (IAS) on Windows Server 2003. Other RADIUS solutions can be "
          "used if they are 802.1X compliant and support the configuration options listed for authenticated wired "
          "802.1X support and wireless support.")

# Prerequisites (seed 004), Dependencies External to Configuration Manager 2007
test_pre_8021x_radius_account_format = manual_check(
    "PRE-8021X-RADIUS-ACCOUNT-FORMAT",
    guide="If you use client authentication methods of EAP-TLS or EAP-TTLS/MSCHAPv2 with a client certificate, "
          "the RADIUS solution must support authentication by using the following format: "
          "domain\\computer_account.")
