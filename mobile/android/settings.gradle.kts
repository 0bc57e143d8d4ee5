// psyedge Android: the `lib` module (Kotlin API + JNI bridge on llama.cpp) and the `app` demo.
pluginManagement {
    repositories {
        google()
        mavenCentral()
        gradlePluginPortal()
    }
}
dependencyResolutionManagement {
    repositoriesMode.set(RepositoriesMode.FAIL_ON_PROJECT_REPOS)
    repositories {
        google()
        mavenCentral()
    }
}
rootProject.name = "psyedge-android"
include(":lib", ":app")
