// The psyedge library: Kotlin API (org.psyedge.PsyEdge), JNI bridge on llama.cpp, contract assets.
plugins {
    alias(libs.plugins.android.library)
    alias(libs.plugins.kotlin.android)
}

android {
    namespace = "org.psyedge"
    compileSdk = libs.versions.compileSdk.get().toInt()
    ndkVersion = libs.versions.ndk.get()

    defaultConfig {
        minSdk = libs.versions.minSdk.get().toInt()
        consumerProguardFiles("consumer-rules.pro")
        ndk {
            // Phones (arm64) and the emulator on x86_64 hosts.
            abiFilters += listOf("arm64-v8a", "x86_64")
        }
        externalNativeBuild {
            cmake {
                // llama.cpp is compiled from the pinned submodule (third_party/llama.cpp) into the bridge.
                arguments += listOf("-DCMAKE_BUILD_TYPE=Release", "-DANDROID_STL=c++_shared")
            }
        }
    }

    externalNativeBuild {
        cmake {
            path = file("src/main/cpp/CMakeLists.txt")
            version = libs.versions.cmake.get()
        }
    }

    sourceSets["main"].java.srcDirs("src/main/kotlin")
    sourceSets["test"].java.srcDirs("src/test/kotlin")

    compileOptions {
        sourceCompatibility = JavaVersion.VERSION_17
        targetCompatibility = JavaVersion.VERSION_17
    }
}

dependencies {
    implementation(libs.kotlinx.coroutines.android)
    testImplementation(libs.junit)
    testImplementation(libs.orgjson)
}

// The host tests read golden files and a host-built JNI library that `make -C mobile/android
// host-test` produces (the Python SDK writes the goldens): run that once before `testDebugUnitTest`.
val hostBuild = rootProject.layout.projectDirectory.dir("build")
tasks.withType<Test>().configureEach {
    systemProperty("psyedge.assets", file("src/main/assets/psyedge").absolutePath)
    systemProperty("psyedge.genAssets", hostBuild.dir("gen-assets").asFile.absolutePath)
    systemProperty("psyedge.genSources", hostBuild.dir("gen-sources").asFile.absolutePath)
    systemProperty("psyedge.root", rootProject.layout.projectDirectory.asFile.absolutePath)
    systemProperty("psyedge.golden", hostBuild.dir("golden").asFile.absolutePath)
    systemProperty("psyedge.aapt2", hostBuild.file("aapt2.ok").asFile.absolutePath)
    systemProperty("java.library.path", hostBuild.dir("jni").asFile.absolutePath)
}

// The contract assets are generated from the Python SDK and committed; regenerate after a
// contract or lexicon change (needs the repo's .venv): ./gradlew :lib:generatePsyedgeAssets
tasks.register<Exec>("generatePsyedgeAssets") {
    group = "psyedge"
    description = "Regenerate src/main/assets/psyedge from the Python SDK (tools/gen_assets.py)"
    val python = rootProject.file("../../.venv/bin/python")
    commandLine(python.absolutePath, rootProject.file("tools/gen_assets.py").absolutePath)
}

kotlin {
    compilerOptions {
        jvmTarget.set(org.jetbrains.kotlin.gradle.dsl.JvmTarget.JVM_17)
    }
}
